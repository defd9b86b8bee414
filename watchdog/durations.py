"""Durations as ops write them in YAML and on the command line: 500ms, 15s, 10m, 1h."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")


def parse_duration(text: str) -> timedelta:
    """Parse ``<number><unit>`` (unit ms, s, m or h); ValueError says what was expected."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"expected a duration like 500ms, 15s, 10m or 1h, found {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling in the same units: ``timedelta(minutes=10)`` → ``10m``."""
    ms = round(value.total_seconds() * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def format_elapsed(value: timedelta) -> str:
    """A human offset such as ``3m15s`` or ``45s`` (for timelines relative to a deploy)."""
    total = round(value.total_seconds())
    sign = "-" if total < 0 else ""
    minutes, seconds = divmod(abs(total), 60)
    if minutes and seconds:
        return f"{sign}{minutes}m{seconds:02d}s"
    return f"{sign}{minutes}m" if minutes else f"{sign}{seconds}s"
