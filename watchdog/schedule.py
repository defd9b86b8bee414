"""The drill schedule, ``"<day> HH:MM"`` in UTC, read as cron trigger fields: the day is a cron
day field (``last fri``, ``1st mon``, ``15``) that the scheduler itself interprets."""

from __future__ import annotations

import re

_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


def cron_fields(schedule: str) -> dict[str, str]:
    """A drill schedule, ``"<day> HH:MM"``, as cron trigger fields: ``"last fri 15:00"`` →
    ``{"day": "last fri", "hour": "15", "minute": "0"}``. The day is handed on as written, for
    the scheduler to read as a cron day field; ValueError says what was expected."""
    day, _, time = schedule.strip().rpartition(" ")
    match = _TIME.match(time)
    if not day.strip() or match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(
            "expected '<day> HH:MM' such as 'last fri 15:00', the day as in a cron day field "
            f"('last fri', '1st mon', '15') and the time 00:00 to 23:59, found {schedule!r}"
        )
    return {"day": " ".join(day.split()), "hour": str(int(match[1])), "minute": str(int(match[2]))}
