"""Percentiles without interpolation: p99 of 1,000 taps is the 990th smallest, a tap that happened."""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``.

        >>> percentile([1, 2, 3, 4], 50), percentile(list(range(1, 101)), 99)
        (2, 99)
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: list[float]) -> dict:
    """``{"p50", "p99", "max", "n"}`` in milliseconds (3 decimals) of durations given in seconds."""
    ms = [s * 1000 for s in seconds]
    return {"p50": round(percentile(ms, 50), 3), "p99": round(percentile(ms, 99), 3),
            "max": round(max(ms), 3) if ms else math.nan, "n": len(ms)}


def ratio(a: float, b: float, digits: int = 2) -> float:
    """``a / b`` rounded; NaN when ``b`` is not positive."""
    return round(a / b, digits) if b and b > 0 and not math.isnan(b) else math.nan
