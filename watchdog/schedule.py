"""The drill schedule, ``"<day> HH:MM"`` in UTC, read as cron trigger fields: the day is a cron
day field (``last fri``, ``1st mon``, ``15``) that the scheduler interprets. Its shape is
checked here, when the config is read, so a typo is a config error with its line; the
scheduler's own reading stays the last word (``daemon.drill_trigger``)."""

from __future__ import annotations

import re

_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_WEEKDAY = r"(mon|tue|wed|thu|fri|sat|sun)"
# One part of a cron day field, as APScheduler reads it: a day, a range, a step, "last", or
# the nth (or last) weekday of the month.
_DAY_PART = re.compile(
    rf"^(\*(/\d+)?|\d{{1,2}}(-\d{{1,2}})?(/\d+)?|last|(1st|2nd|3rd|4th|5th|last) {_WEEKDAY})$"
)
_EXPECTED = (
    "expected '<day> HH:MM' such as 'last fri 15:00', the day as in a cron day field ('last "
    "fri', '1st mon', '15', '1-7') and the time 00:00 to 23:59"
)


def cron_fields(schedule: str) -> dict[str, str]:
    """A drill schedule as cron trigger fields: ``"last fri 15:00"`` →
    ``{"day": "last fri", "hour": "15", "minute": "0"}``; ValueError says what was expected."""
    day, _, time = schedule.strip().rpartition(" ")
    day = " ".join(day.lower().split())
    match = _TIME.match(time)
    if (
        not day
        or not all(_DAY_PART.match(part.strip()) for part in day.split(","))
        or match is None
        or int(match[1]) > 23
        or int(match[2]) > 59
    ):
        raise ValueError(f"{_EXPECTED}, found {schedule!r}")
    return {"day": day, "hour": str(int(match[1])), "minute": str(int(match[2]))}
