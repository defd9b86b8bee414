from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_watchdog(tmp_path: Path) -> Runner:
    """Run the real ``watchdog`` command in a subprocess, from the repository root."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "watchdog.cli", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    return run
