"""The Prometheus textfile for node_exporter's textfile collector (``[metrics] textfile``).

The daemon builds a snapshot dict and hands it to a :class:`MetricsWriter`
every few seconds and at each change; node_exporter reads ``*.prom`` files
from its textfile directory (on Debian ``/var/lib/prometheus/node-exporter``)
and serves them with the host's metrics::

    writer = MetricsWriter("/var/lib/prometheus/node-exporter/kiosk.prom")
    writer.update(snapshot)   # never raises; logs once per streak of failures

The text format comes from ``prometheus_client`` (the ``metrics`` extra): a
collector yields metric families from the snapshot and ``generate_latest``
writes HELP, TYPE, samples and the escaping of label values (a kiosk name may
hold quotes, backslashes, newlines). Its own ``write_to_textfile`` is not used:
it neither fsyncs nor sets a mode, and under the unit's ``UMask=0027`` the file
would be unreadable by node_exporter's user. :func:`write` writes a hidden temp
file in the same directory (never ``*.prom``, so the collector skips it),
fsyncs it, makes it 0644 and renames it over the target: a reader sees the
old file or the new one, never a partial one.

Every label value is emitted, 0 when the snapshot lacks it, so a rate() over
an outcome never starts from nothing. ``kiosk_last_delivery_timestamp_seconds``
has no sample until a first delivery (0 would read as "in 1970"); an empty
queue's oldest age is 0.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from kiosk import files

log = logging.getLogger("kiosk.metrics")

TAP_OUTCOMES = ("clock_in", "clock_out", "too_soon", "repeat", "unknown", "disabled", "invalid", "error", "stale")
DELIVERY_RESULTS = ("delivered", "rejected", "failed")
FILE_MODE = 0o644  # node_exporter runs as its own user (prometheus on Debian)
DEBIAN_TEXTFILE = "/var/lib/prometheus/node-exporter/kiosk.prom"

# name -> help text, in the order written (kiosk_info last); counters without their _total here.
GAUGES = {
    "kiosk_queue_entries": "Attendance entries queued for TimeTrack.",
    "kiosk_queue_oldest_age_seconds": "Age of the oldest queued entry in seconds (0 when the queue is empty).",
    "kiosk_rejected_entries": "Entries the server rejected, waiting for an admin (kiosk queue list --rejected).",
    "kiosk_flagged_entries": "Clock-ins and entries flagged for review (forgotten clock-out, unknown clock).",
    "kiosk_open_clock_ins": "People clocked in now.",
}
COUNTERS = {
    "kiosk_taps": ("outcome", TAP_OUTCOMES, "taps_total", "Badge taps by outcome since the store was created."),
    "kiosk_deliveries": ("result", DELIVERY_RESULTS, "deliveries_total",
                         "Delivery attempts by result since the store was created."),
}


class MetricsUnavailable(ImportError):
    """prometheus_client is not installed: ``pip install 'kiosk[metrics]'``."""


def _client():
    try:
        from prometheus_client import exposition
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
    except ImportError as exc:
        raise MetricsUnavailable("metrics.textfile needs prometheus_client: pip install 'kiosk[metrics]' "
                                 f"(or apt-get install python3-prometheus-client) ({exc})") from None
    return exposition, GaugeMetricFamily, CounterMetricFamily, InfoMetricFamily


def _number(value: Any) -> float:
    return 0.0 if value is None else float(value)


class SnapshotCollector:
    """A prometheus_client collector over one snapshot dict (see the module docstring for its keys)."""

    def __init__(self, snapshot: Mapping[str, Any]):
        self.snapshot = snapshot

    def collect(self):
        _, Gauge, Counter, Info = _client()
        snap = self.snapshot
        for name, help_text in GAUGES.items():
            yield Gauge(name, help_text, value=_number(snap.get(name.removeprefix("kiosk_"))))
        for name, (label, values, key, help_text) in COUNTERS.items():
            family = Counter(name, help_text, labels=[label])
            counts = snap.get(key) or {}
            for value in values:
                family.add_metric([value], float(counts.get(value) or 0))
            yield family
        last = Gauge("kiosk_last_delivery_timestamp_seconds",
                     "Unix time of the last confirmed delivery (no sample before the first one).")
        if snap.get("last_delivery_timestamp_seconds") is not None:
            last.add_metric([], float(snap["last_delivery_timestamp_seconds"]))
        yield last
        yield Gauge("kiosk_reader_up", "1 when the badge reader answers, else 0.",
                    value=1.0 if snap.get("reader_up") else 0.0)
        yield Gauge("kiosk_clock_synced", "1 when the system clock is synchronised, else 0.",
                    value=1.0 if snap.get("clock_synced") else 0.0)
        yield Info("kiosk", "This kiosk's name (kiosk.name) and software version.",
                   value={"name": str(snap.get("name", "")), "version": str(snap.get("version", ""))})


def render(snapshot: Mapping[str, Any]) -> bytes:
    """The snapshot in the Prometheus text format (UTF-8).

    >>> b"kiosk_queue_entries 3.0" in render({"queue_entries": 3, "name": "door", "version": "0.1.0"})
    True
    """
    exposition = _client()[0]
    return exposition.generate_latest(SnapshotCollector(snapshot))


def write(path: str | os.PathLike, snapshot: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically with the snapshot's metrics (temp file, fsync, chmod 0644, rename).

    Raises OSError (or :class:`MetricsUnavailable`); :class:`MetricsWriter` is the caller that never raises.
    """
    data = render(snapshot)
    with files.replaced(path, mode=FILE_MODE, binary=True) as fh:
        fh.write(data)


class MetricsWriter:
    """Writes the textfile for the daemon; never raises, logs a failure once per streak.

    ``update(snapshot)`` writes at once (call it at each change and every few
    seconds); an empty ``path`` turns it into a no-op. After a failure it logs
    one error, stays quiet while failures go on, and logs once when writing works
    again. Thread-safe: the tap path and a timer may both call it.
    """

    def __init__(self, path: str | os.PathLike | None, logger: logging.Logger | None = None):
        self.path = os.fspath(path) if path else ""
        self.log = logger or log
        self.failing = False
        self.writes = 0
        self.failures = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def update(self, snapshot: Mapping[str, Any]) -> bool:
        """Write ``snapshot``; True when the file now holds it."""
        if not self.path:
            return False
        with self._lock:
            try:
                write(self.path, snapshot)
            except Exception as exc:  # a full disk or a removed directory must not stop a tap
                self.failures += 1
                if not self.failing:
                    self.failing = True
                    self.log.error("cannot write the metrics file %s: %s (logged once until it works again)",
                                   self.path, exc)
                return False
            self.writes += 1
            if self.failing:
                self.failing = False
                self.log.info("metrics file %s written again", self.path)
            return True


def snapshot(store, *, unsaved_errors: int = 0, reader_up: bool, clock_synced: bool, name: str) -> dict[str, Any]:
    """What the ``kiosk_*`` metrics show now: queue, review lists and the persistent counters of ``store``.

    ``unsaved_errors``: ERROR taps the store could not count yet (it was failing), added so
    that the counter never goes backwards when they are saved.
    """
    from kiosk import __version__, clock

    counters = store.counters()
    oldest = store.oldest_queued()
    last = store.status_value("last_delivery")
    taps = {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("taps:")}
    taps["error"] = taps.get("error", 0) + unsaved_errors
    return {
        "queue_entries": store.outbox_count(),
        "queue_oldest_age_seconds": (clock.utcnow() - oldest.queued_at).total_seconds()
        if oldest is not None and oldest.queued_at is not None else None,
        "rejected_entries": store.rejected_count(),
        "flagged_entries": store.flagged_count(),
        "open_clock_ins": store.open_count(),
        "taps_total": taps,
        "deliveries_total": {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("deliveries:")},
        "last_delivery_timestamp_seconds": clock.from_iso(last["at"]).timestamp() if last else None,
        "reader_up": bool(reader_up),
        "clock_synced": bool(clock_synced),
        "name": name,
        "version": __version__,
    }
