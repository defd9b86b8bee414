"""The incident post-mortem written from a real SQLite store: the runbook's template filled with
the stored times, a chart beside it, written once and never half-written."""

from __future__ import annotations

import re
import resource
import signal
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.incident_fixtures import RULES, SECRETS, T0, settings, store_incident
from watchdog.errors import WatchdogError
from watchdog.incident import write_incident
from watchdog.store.records import Outcome, WatchRecord, WatchState
from watchdog.store.sql import SqlStore

STEM = "2026-01-28-rollback-backend-error-rate-critical"
SVG = "{http://www.w3.org/2000/svg}"


def hhmmss(at: datetime | None) -> str:
    assert at is not None
    return f"{at.astimezone(UTC):%H:%M:%S}"


def timeline(text: str) -> list[tuple[str, str]]:
    section = text.split("## Timeline (UTC)")[1].split("\n## ")[0]
    return re.findall(r"^- \*\*(\S+)\*\* - (.*)$", section, re.MULTILINE)


async def test_the_report_follows_the_runbook_template_with_the_stored_times(
    store: SqlStore, tmp_path: Path
) -> None:
    incident = await store_incident(store)
    path = await write_incident(store, settings(tmp_path / "incidents"), RULES, incident.watch.id)

    assert path == tmp_path / "incidents" / f"{STEM}.md"
    text = path.read_text()
    assert text.splitlines()[0] == "<!-- watch: watch-dep-2 -->"
    assert "# Incident Post-Mortem: backend rolled back (error-rate-critical)" in text
    assert "**Date:** 2026-01-28" in text
    assert "**Duration:** 12:00:00 to 12:05:40 UTC (5m40s, deploy to verified healthy)" in text
    assert "**Severity:** SEV1 (Critical): error rate reached 6 %" in text
    assert "about 200 of 2,500 active users affected at the peak (8 %)" in text
    assert "4m25s of impact (detection to verified healthy)" in text
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings == [
        "Timeline (UTC)",
        "Decision",
        "Actions",
        "Verification",
        "Chart",
        "Root Cause",
        "Resolution",
        "Prevention",
        "Action Items",
    ]

    watch, action = incident.watch, incident.actions[0]
    first_trouble = incident.decisions[4]
    assert [at for at, _ in timeline(text)] == [
        hhmmss(incident.deployment.deployed_at),
        hhmmss(first_trouble.at),
        hhmmss(watch.decided_at),
        hhmmss(action.started_at),
        hhmmss(action.finished_at),
        hhmmss(watch.closed_at),
    ]
    events = [what for _, what in timeline(text)]
    assert events[0].startswith("Deployment initiated")
    assert events[1].startswith("Issue first detected: monitor by `error-rate-elevated`")
    assert events[2] == "Rollback decision made (`error-rate-critical`)"
    assert events[3] == "Rollback started: render to `dep-1`"
    assert events[4] == "Rollback executed (41 s of the 300 s target)"
    assert events[5] == "System verified healthy"

    assert "**rollback** by rule `error-rate-critical`, urgency immediate" in text
    assert "Runbook: “Error rate >1% in first 10 minutes after deployment”" in text
    assert f"> {watch.explanation}" in text
    assert "| 12:02:15 | `error_rate` | 6 % over 4,000 requests |" in text
    assert "| rollback | render | `dep-1` | done | 12:02:16 | 12:02:57 | 41 s of the 300 s target |" in text
    assert "Passed: 3 of 3 checks passed." in text
    assert "| error rate | ✅ pass | 0.05 % < 0.1 % within 5m |" in text
    assert f"]({STEM}.svg)" in text
    assert "_To be filled in: what went wrong in deployment `dep-2`" in text
    assert "- [ ] Schedule fix deployment" in text


async def test_the_chart_sits_beside_the_report_with_thresholds_and_the_rollback(
    store: SqlStore, tmp_path: Path
) -> None:
    incident = await store_incident(store)
    path = await write_incident(store, settings(tmp_path / "incidents"), RULES, incident.watch.id)

    chart = path.with_suffix(".svg")
    root = ET.parse(chart).getroot()
    assert root.tag == f"{SVG}svg"
    texts = {"".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")}
    assert {
        "error-rate-critical, error-rate-high (1 %)",
        "error-rate-rising, error-rate-elevated (0.5 %)",
        "latency-critical (+200 %)",
        "latency-degraded (+50 %)",
        "rollback 12:02:15",
        "error rate (%)",
        "latency change (%)",
        "time (UTC)",
    } <= texts
    ids = {element.get("id") for element in root.iter()}
    assert {"error_rate-threshold-1", "error_rate-rollback", "latency_change-rollback"} <= ids


async def test_a_second_run_returns_the_same_file_untouched(
    store: SqlStore, tmp_path: Path
) -> None:
    incident = await store_incident(store)
    config = settings(tmp_path / "incidents")
    first = await write_incident(store, config, RULES, incident.watch.id)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in first.parent.iterdir()}

    again = await write_incident(store, config, RULES, incident.watch.id)

    assert again == first
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in first.parent.iterdir()}
    assert after == before
    assert sorted(before) == [f"{STEM}.md", f"{STEM}.svg"]


async def test_another_incident_with_the_same_name_gets_a_suffix(
    store: SqlStore, tmp_path: Path
) -> None:
    config = settings(tmp_path / "incidents")
    first = await store_incident(store)
    first_path = await write_incident(store, config, RULES, first.watch.id)
    first_text = first_path.read_bytes()
    second = await store_incident(store, deployment_id="dep-3")

    path = await write_incident(store, config, RULES, second.watch.id)

    assert path.name == f"{STEM}-2.md"
    assert path.with_suffix(".svg").is_file()
    assert path.read_text().splitlines()[0] == "<!-- watch: watch-dep-3 -->"
    assert f"]({STEM}-2.svg)" in path.read_text()
    assert first_path.read_bytes() == first_text
    assert await write_incident(store, config, RULES, second.watch.id) == path
    assert await write_incident(store, config, RULES, first.watch.id) == first_path


async def test_a_report_written_by_hand_under_the_name_is_left_alone(
    store: SqlStore, tmp_path: Path
) -> None:
    directory = tmp_path / "incidents"
    directory.mkdir()
    (directory / f"{STEM}.md").write_text("# Incident Post-Mortem: written by people\n")
    incident = await store_incident(store)

    path = await write_incident(store, settings(directory), RULES, incident.watch.id)

    assert path.name == f"{STEM}-2.md"
    assert (directory / f"{STEM}.md").read_text() == "# Incident Post-Mortem: written by people\n"
    assert sorted(p.name for p in directory.iterdir()) == [
        f"{STEM}-2.md",
        f"{STEM}-2.svg",
        f"{STEM}.md",
    ]


async def test_a_dry_run_says_plainly_that_nothing_was_rolled_back(
    store: SqlStore, tmp_path: Path
) -> None:
    incident = await store_incident(store, outcome=Outcome.WOULD_ROLL_BACK)
    path = await write_incident(store, settings(tmp_path / "incidents"), RULES, incident.watch.id)

    text = path.read_text()
    assert path.name == f"{STEM}.md"
    assert (
        "# Incident Post-Mortem (dry run): backend would have been rolled back "
        "(error-rate-critical)"
    ) in text
    assert "**This was a dry run:** the watchdog decided to roll back but sent nothing" in text
    events = [what for _, what in timeline(text)]
    assert "Rollback decision made (`error-rate-critical`); dry run: nothing was sent" in events
    assert not any(e.startswith(("Rollback executed", "System verified")) for e in events)
    assert "No verification ran." in text


async def test_a_failed_rollback_is_reported_with_its_error(
    store: SqlStore, tmp_path: Path
) -> None:
    incident = await store_incident(store, outcome=Outcome.ROLLBACK_FAILED)
    path = await write_incident(store, settings(tmp_path / "incidents"), RULES, incident.watch.id)

    text = path.read_text()
    assert "# Incident Post-Mortem: backend rollback failed (error-rate-critical)" in text
    assert "**Severity:** SEV1 (Critical): the rollback failed" in text
    assert ("12:02:57", "Rollback failed: render: 503 Service Unavailable") in timeline(text)
    assert "deploy to watch closed, not verified healthy" in text


async def test_a_disabled_flag_is_reported_without_a_rollback(
    store: SqlStore, tmp_path: Path
) -> None:
    incident = await store_incident(store, outcome=Outcome.FLAG_DISABLED)
    path = await write_incident(store, settings(tmp_path / "incidents"), RULES, incident.watch.id)

    text = path.read_text()
    assert path.name == "2026-01-28-rollback-backend-flag-broken.md"
    assert "feature flag new_checkout disabled on backend (flag-broken)" in text
    assert ("12:02:57", "Flag `new_checkout` disabled (41 s of the 60 s target)") in timeline(text)
    svg = path.with_suffix(".svg").read_text()
    assert "error_rate-rollback" not in svg


async def test_a_healthy_watch_makes_no_report(store: SqlStore, tmp_path: Path) -> None:
    incident = await store_incident(store)
    healthy = WatchRecord(
        id="watch-healthy",
        target="backend",
        deployment_id="dep-2",
        state=WatchState.CLOSED,
        started_at=T0,
        closes_at=T0,
        interval=incident.watch.interval,
        outcome=Outcome.HEALTHY,
    )
    await store.open_watch(healthy)
    directory = tmp_path / "incidents"

    with pytest.raises(WatchdogError, match="watch watch-healthy ended healthy"):
        await write_incident(store, settings(directory), RULES, healthy.id)
    with pytest.raises(WatchdogError, match="no watch 'nope'"):
        await write_incident(store, settings(directory), RULES, "nope")
    assert not directory.exists()


async def test_an_unusable_directory_is_a_clear_error(store: SqlStore, tmp_path: Path) -> None:
    incident = await store_incident(store)
    (tmp_path / "a-file").write_text("not a directory")
    directory = tmp_path / "a-file" / "incidents"

    with pytest.raises(WatchdogError) as caught:
        await write_incident(store, settings(directory), RULES, incident.watch.id)

    assert str(caught.value) == (
        f"cannot write the incident report in {directory}: Not a directory"
    )


@contextmanager
def disk_full() -> Iterator[None]:
    """Files this process writes may not grow past 4 KiB, as on a full disk: the write fails
    with an OSError (SIGXFSZ ignored so the process survives to see it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_a_full_disk_leaves_nothing_half_written(store: SqlStore, tmp_path: Path) -> None:
    incident = await store_incident(store)
    directory = tmp_path / "incidents"
    directory.mkdir()

    with (
        disk_full(),
        pytest.raises(WatchdogError, match=f"in {directory}: File too large"),
    ):
        await write_incident(store, settings(directory), RULES, incident.watch.id)

    assert list(directory.iterdir()) == []
    path = await write_incident(store, settings(directory), RULES, incident.watch.id)
    assert sorted(p.name for p in directory.iterdir()) == [path.name, f"{STEM}.svg"]


async def test_the_report_carries_no_secret_from_the_settings(
    store: SqlStore, tmp_path: Path
) -> None:
    incident = await store_incident(store)
    path = await write_incident(store, settings(tmp_path / "incidents"), RULES, incident.watch.id)

    written = path.read_text() + path.with_suffix(".svg").read_text()
    for secret in SECRETS:
        assert secret not in written
