"""What the sandbox's Sentry knows: an in-memory log of error and transaction events.

The toy app writes it while serving, the Sentry stand-in reads it, and tests script whole
stretches of traffic with ``write_timeline`` so they know the exact counts Sentry will answer.
"""

from __future__ import annotations

import random
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

EventType = Literal["error", "transaction"]

FAILED_STATUS = "internal_error"
"""The ``transaction.status`` of a failed request (Sentry's span status for an HTTP 500)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event as Sentry stores it.

    ``status`` is the transaction status (``ok``, ``internal_error``…), meaningful only for
    transactions; ``title`` is what Sentry groups an error into an issue by.
    """

    timestamp: datetime
    project: str
    environment: str
    release: str
    type: EventType
    user: str | None = None
    duration_ms: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    status: str = "ok"
    title: str = ""

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:
            raise ValueError(f"event timestamp must carry a time zone: {self.timestamp}")


class Stream(NamedTuple):
    """The fields Sentry queries always narrow by: the log keeps each stream's events in time
    order, so a query reads only the streams it wants and, in each, only its window."""

    type: EventType
    project: str
    environment: str
    release: str


class EventLog:
    """Append-only and thread-safe: the toy app writes from the server's thread while tests and
    the Sentry stand-in read from theirs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        # Each stream's timestamps and events, sorted by time (ties in write order).
        self._streams: dict[Stream, tuple[list[datetime], list[Event]]] = {}

    def extend(self, events: Iterable[Event]) -> None:
        batch = list(events)
        with self._lock:
            self._events.extend(batch)
            for event in batch:
                stream = Stream(event.type, event.project, event.environment, event.release)
                times, stored = self._streams.setdefault(stream, ([], []))
                at = bisect_right(times, event.timestamp)  # the end, unless written late
                times.insert(at, event.timestamp)
                stored.insert(at, event)

    def snapshot(self) -> list[Event]:
        """Every event so far, oldest write first; a copy, so readers never hold the lock."""
        with self._lock:
            return list(self._events)

    def between(
        self, start: datetime, end: datetime, wanted: Callable[[Stream], bool]
    ) -> list[Event]:
        """The events in [start, end) of every stream ``wanted`` accepts, in no set order; the
        cost is that of the events returned plus one call of ``wanted`` per stream."""
        chosen: list[Event] = []
        with self._lock:
            for stream, (times, events) in self._streams.items():
                if wanted(stream):
                    chosen += events[bisect_left(times, start) : bisect_left(times, end)]
        return chosen

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


def is_hit(index: int, fraction: float) -> bool:
    """Whether request number ``index`` of a run is among the ``fraction`` that fail.

    Hits are spread evenly and the first n requests hold exactly ``round(n * fraction)`` of them,
    so error counts are exact for any prefix of a run, however it is cut into pieces.
    """
    return round((index + 1) * fraction) > round(index * fraction)


@dataclass(frozen=True, slots=True)
class Timeline:
    """What one ``write_timeline`` call wrote, counted from the events themselves."""

    transactions: int
    errors: int
    users: int
    error_users: int


def write_timeline(
    log: EventLog,
    *,
    project: str,
    environment: str,
    release: str,
    start: datetime,
    end: datetime,
    per_minute: float,
    error_fraction: float = 0.0,
    users: int = 100,
    error_user_fraction: float = 1.0,
    p95_ms: float = 100.0,
    tags: Mapping[str, str] | None = None,
    error_title: str = "RuntimeError: sandbox fault",
    first: int = 0,
) -> Timeline:
    """Write ``per_minute`` transactions a minute for ``release``, evenly spaced over
    [start, end), and one error event for each failed one.

    - Exactly ``round(n * error_fraction)`` of the n transactions fail (see ``is_hit``).
    - Users ``user-0`` … ``user-{users-1}`` take turns at the requests that succeed, and the
      first ``round(users * error_user_fraction)`` of them (at least one) at those that fail.
    - Durations are spread evenly from ``p95_ms / 2`` up, shuffled with a fixed seed, so that
      ``p95(transaction.duration)`` over this write is ``p95_ms`` (linear interpolation, 2+
      transactions); any slice of the window holds a similar mix.
    - ``first`` continues an earlier run of ``first`` transactions: writing a window in pieces
      with ``first`` carried over gives the same failures and users as writing it at once.
    """
    if not 0 <= error_fraction <= 1 or not 0 <= error_user_fraction <= 1:
        raise ValueError("error_fraction and error_user_fraction are fractions between 0 and 1")
    count = round(per_minute * (end - start) / timedelta(minutes=1))
    error_users = max(1, round(users * error_user_fraction))
    ranks = list(range(count))
    random.Random(first).shuffle(ranks)  # noqa: S311 - a fixed mix, not a secret
    step = (p95_ms / 2) / (0.95 * max(count - 1, 1))
    shared_tags = dict(tags or {})
    events: list[Event] = []
    for i in range(count):
        n = first + i
        failed = is_hit(n, error_fraction)
        earlier_failures = round(n * error_fraction)
        turn = earlier_failures % error_users if failed else (n - earlier_failures) % users
        transaction = Event(
            start + (end - start) * i / count,
            project,
            environment,
            release,
            "transaction",
            f"user-{turn}",
            p95_ms / 2 + step * ranks[i],
            shared_tags,
            FAILED_STATUS if failed else "ok",
        )
        events.append(transaction)
        if failed:
            events.append(
                replace(transaction, type="error", duration_ms=None, status="ok", title=error_title)
            )
    log.extend(events)
    return Timeline(
        transactions=count,
        errors=len(events) - count,
        users=len({e.user for e in events}),
        error_users=len({e.user for e in events if e.type == "error"}),
    )
