"""Command-line value types: times and badge ids, refused with a usage error (exit 2) saying why."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from kiosk import text


class Timestamp(click.ParamType):
    """ISO 8601 with a zone: ``2026-11-30T17:05:00Z`` or local time with its offset
    (``2026-11-30T18:05:00+01:00``). A time without a zone is refused: it could mean two things."""

    name = "TIME"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        raw = str(value).strip()
        example = datetime.now().astimezone().replace(microsecond=0).isoformat()
        try:
            if len(raw) > 40:
                raise ValueError
            parsed = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in ("Z", "z") else raw)
        except ValueError:
            self.fail(f"'{text.escape(raw, limit=40)}' is not an ISO 8601 time, e.g. {example} "
                      "or 2026-11-30T17:05:00Z", param, ctx)
        if parsed.tzinfo is None:
            self.fail(f"'{text.escape(raw, limit=40)}' has no zone: add Z (UTC) or the local offset, "
                      f"e.g. {example}", param, ctx)
        return parsed.astimezone(UTC)


TIME = Timestamp()


class Limit(click.ParamType):
    """A number of rows: a positive whole number, or 0 for all of them."""

    name = "N"

    def convert(self, value, param, ctx) -> int | None:
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            return None if value == 0 else value
        try:
            n = int(str(value).strip())
        except ValueError:
            self.fail(f"'{text.escape(value, limit=20)}' is not a whole number (0 for all)", param, ctx)
        if n < 0:
            self.fail("must not be negative (0 for all)", param, ctx)
        return None if n == 0 else n


LIMIT = Limit()
