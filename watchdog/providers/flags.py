"""The runbook's "Feature Flag Emergency Disable": the FlagSwitch seam. Its Method 1 (SQL on
the flags table) is ``flags_sql.SqlFlagSwitch``, its Method 2 (the app's flags API)
``flags_http.ApiFlagSwitch``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Values = tuple[bool, int]  # enabled_globally, rollout_percentage
OFF: Values = (False, 0)
ON: Values = (True, 100)


@dataclass(frozen=True)
class FlagState:
    """A flag as read back after a change. ``cache_cleared`` is False when the app's flag cache
    could not be cleared (the old value may be served until it expires), None when the switch
    has no cache to clear; ``notes`` are what people must know afterwards."""

    key: str
    enabled_globally: bool
    rollout_percentage: int
    cache_cleared: bool | None = None
    notes: tuple[str, ...] = ()


class FlagSwitch(Protocol):
    """Turns one feature flag off for everyone, and back on.

    Every method raises ``RollbackError`` (``provider`` is the switch's name, ``deployment_id``
    the flag key; ``reached=False`` when nothing changed) for an unknown flag or a change that
    failed, and ``ConfigError`` for credentials or a table that cannot work. A change is sent
    at most once per call and read back before it is reported.
    """

    name: str

    async def disable(self, key: str, reason: str) -> FlagState:
        """``enabled_globally = false, rollout_percentage = 0``."""

    async def enable(self, key: str, reason: str) -> FlagState:
        """Undo ``disable`` (each switch says how it knows the values to restore)."""

    async def state(self, key: str) -> FlagState:
        """The flag as it is now, changing nothing."""

    async def check(self) -> None:
        """Prove the credentials and the table or API work, changing nothing."""


def show(values: Values | FlagState) -> str:
    """The two values as people read them in messages."""
    if isinstance(values, FlagState):
        values = (values.enabled_globally, values.rollout_percentage)
    return f"enabled_globally={str(values[0]).lower()}, rollout_percentage={values[1]}"
