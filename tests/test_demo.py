"""``watchdog demo`` as people run it: a real process that starts the sandbox and the daemon on
loopback, deploys a good release and a bad one, and says what happened. What it claims is
checked against what it wrote (the state store, the incident report and its chart)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO, Runner
from watchdog.sandbox import stack
from watchdog.store import opened
from watchdog.store.records import ActionRecord, ActionStatus, WatchRecord

# Generous: the demo takes about half a minute; no timing is asserted.
TIMEOUT = 240


def demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog.cli", "demo", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )


def hostile_environment(elsewhere: Path) -> dict[str, str]:
    """The user's environment without any sandbox credential, and with overrides that would
    derail the demo if it read them: a dry run, and a state store somewhere else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDBOX_", "WATCHDOG_"))}
    env["WATCHDOG_DRY_RUN"] = "true"
    env["WATCHDOG_STATE__URL"] = f"sqlite:///{elsewhere}/state.db"
    return env


def stored(db: Path) -> list[tuple[WatchRecord, list[ActionRecord]]]:
    """Every watch in the demo's state store with its actions."""

    async def read() -> list[tuple[WatchRecord, list[ActionRecord]]]:
        async with opened(f"sqlite:///{db}") as store:
            return [(w, await store.actions(w.id)) for w in await store.recent_watches(50)]

    return asyncio.run(read())


def rollbacks(db: Path) -> list[ActionRecord]:
    return [a for _, actions in stored(db) for a in actions if a.kind == "rollback"]


def test_the_demo_closes_the_good_deploy_healthy_and_rolls_the_bad_one_back_once(
    tmp_path: Path,
) -> None:
    kept, elsewhere = tmp_path / "demo", tmp_path / "elsewhere"
    done = demo("--json", "--keep", str(kept), env=hostile_environment(elsewhere))

    assert done.returncode == 0, done.stdout + done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    assert (summary["ok"], summary["problems"]) == (True, [])
    good, bad = summary["good"], summary["bad"]
    assert good["verdict"] == "healthy", summary
    assert good["rollbacks"] == 0
    assert (bad["verdict"], bad["rollbacks"], bad["verified"]) == ("rolled_back", 1, True)
    assert bad["rolled_back_to"] == good["deployment_id"]
    assert bad["rule"]
    assert bad["explanation"]

    paths = {name: Path(path) for name, path in summary["paths"].items()}
    assert all(path.is_relative_to(kept) for path in paths.values()), paths
    [done_rollback] = rollbacks(paths["state_db"])
    assert done_rollback.status is ActionStatus.DONE
    assert done_rollback.watch_id == bad["watch_id"]
    watches = {w.id: w for w, _ in stored(paths["state_db"])}
    assert watches[good["watch_id"]].deployment_id == good["deployment_id"]
    assert watches[bad["watch_id"]].incident_report == str(paths["incident_report"])

    assert paths["incident_report"].suffix == ".md"
    assert bad["deployment_id"] in paths["incident_report"].read_text()
    chart = paths["chart"].read_text()
    assert paths["chart"].suffix == ".svg"
    assert "<svg" in chart

    assert summary["slack"]["posted"] >= 1
    assert any(bad["deployment_id"] in text for text in summary["slack"]["messages"])

    assert not elsewhere.exists()  # the user's WATCHDOG_* overrides played no part
    for secret in stack.ENV.values():
        assert secret not in done.stdout + done.stderr
        assert secret not in paths["log"].read_text()


def test_off_a_terminal_the_narration_is_plain_lines_that_tell_the_story(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    done = demo("--keep", str(kept), env=hostile_environment(tmp_path / "elsewhere"))

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "\x1b[" not in out  # no terminal control codes in a pipe
    [(bad, _)] = [(w, a) for w, a in stored(kept / "state.db") if a]
    assert bad.incident_report is not None
    told = [
        "detected after",
        f"rolling back {bad.deployment_id}",
        "rolled back in",
        "verified: ",
        "Slack got: ",
        f"incident report: {bad.incident_report}",
        str(kept / "state.db"),
        str(Path(bad.incident_report).with_suffix(".svg")),
    ]
    assert [line for line in told if line not in out] == [], out
    assert out.index("detected after") < out.index("rolled back in") < out.index("verified: ")


def test_keep_refuses_a_directory_that_is_not_empty(tmp_path: Path, run_watchdog: Runner) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = run_watchdog("demo", "--keep", str(tmp_path))

    assert done.returncode == 2
    assert f"--keep {tmp_path}: expected a new or empty directory" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
