"""A full disk where the post-mortems go. The rollback never waits on the report: it happens
once, the watch closes rolled_back and Slack hears of it; the report's failure is logged, and
the follow-up round writes it once there is room."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemons import MakeDaemon, wait_for
from watchdog.sandbox import stack
from watchdog.sandbox.deployments import GOOD_RELEASE


@dataclass
class FullDisk:
    """The incidents directory with no room: a full tmpfs mounted there (``how="tmpfs"``) or,
    where mounting is not allowed, a regular file in its place (``how="file"``)."""

    directory: Path
    how: str
    filler: Path

    def make_room(self) -> None:
        self.filler.unlink()


def _mounted_tmpfs(directory: Path) -> bool:
    """Mount a 256 KiB tmpfs on ``directory``; False where that is not allowed."""
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(directory)]
    try:
        return subprocess.run(mount, capture_output=True, check=False).returncode == 0
    except OSError:  # no mount command
        return False


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until its file system is full."""
    with path.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(bytes(4096))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


@pytest.fixture
def full_incidents_dir(tmp_path: Path) -> Iterator[FullDisk]:
    directory = tmp_path / "incidents"  # where the sandbox's config puts the reports
    directory.mkdir()
    if not _mounted_tmpfs(directory):
        directory.rmdir()
        directory.write_text("not a directory\n")
        yield FullDisk(directory, "file", directory)
        return
    try:
        filler = directory / "filler"
        _fill(filler)
        yield FullDisk(directory, "tmpfs", filler)
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def test_a_full_incident_disk_delays_the_report_never_the_rollback(
    sandbox: stack.Stack, make_daemon: MakeDaemon, full_incidents_dir: FullDisk
) -> None:
    daemon = make_daemon().start()
    watch_id = daemon.announce()

    summary = daemon.closed(watch_id)

    assert summary["verdict"] == "rolled_back", summary
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE
    failed = daemon.wait_event("followup.failed", part="_write_incidents")
    assert str(full_incidents_dir.directory) in failed["error"]
    if full_incidents_dir.how == "tmpfs":
        assert "No space left on device" in failed["error"]
    wait_for(
        lambda: any("Rolled back" in t for t in sandbox.channel.texts()), 20, "word to Slack"
    )
    assert daemon.summary(watch_id)["incident_report"] is None

    full_incidents_dir.make_room()

    report = Path(wait_for(lambda: daemon.summary(watch_id)["incident_report"], 20, "a report"))
    assert report.parent == full_incidents_dir.directory
    assert report.read_text().startswith(f"<!-- watch: {watch_id} -->")
    assert report.with_suffix(".svg").exists()
    assert daemon.events("incident.written", watch=watch_id, path=str(report))
    assert not list(full_incidents_dir.directory.glob(".incident-*"))  # nothing half-written
    assert sandbox.backend.count("rollback") == 1
