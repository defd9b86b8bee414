"""The event log's indexed reads answer exactly what a scan of every event would."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from watchdog.sandbox.events import Event, EventLog, EventType, Stream

from .conftest import T0

SECOND = timedelta(seconds=1)
TYPES: list[EventType] = ["error", "transaction"]

# Few distinct values, so that streams repeat, timestamps tie and windows fall on events.
stream = st.builds(
    Stream,
    st.sampled_from(TYPES),
    st.sampled_from(["acme-api", "acme-web"]),
    st.sampled_from(["production", "staging"]),
    st.sampled_from(["r1", "r2"]),
)
batches = st.lists(st.lists(st.tuples(st.integers(0, 20), stream), max_size=8), max_size=6)


@given(
    batches=batches,
    start=st.integers(-1, 21),
    length=st.integers(-1, 22),
    wanted=st.sets(stream),
)
def test_a_window_holds_what_a_full_scan_finds_however_events_arrive(
    batches: list[list[tuple[int, Stream]]],
    start: int,
    length: int,
    wanted: set[Stream],
) -> None:
    log = EventLog()
    written = 0
    for batch in batches:  # each batch in any time order, as late writes arrive
        log.extend(
            # A user of its own tells every event apart.
            Event(
                T0 + second * SECOND, s.project, s.environment, s.release, s.type, f"u{written + i}"
            )
            for i, (second, s) in enumerate(batch)
        )
        written += len(batch)
    begin, end = T0 + start * SECOND, T0 + (start + length) * SECOND

    found = log.between(begin, end, lambda stream: stream in wanted)

    scanned = [
        e
        for e in log.snapshot()
        if begin <= e.timestamp < end
        and Stream(e.type, e.project, e.environment, e.release) in wanted
    ]
    assert sorted(str(e.user) for e in found) == sorted(str(e.user) for e in scanned)
