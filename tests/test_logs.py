"""Logs are JSON events on the stream given (stderr by default), and secrets never show."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.test_settings import MINIMAL, write
from watchdog import logs
from watchdog.settings import load_config


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    logs.configure(out)
    yield out
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


def test_every_configured_secret_is_masked_wherever_it_appears(
    stream: io.StringIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RENDER_API_KEY", "rnd_live_0123456789")
    settings = load_config(write(tmp_path, MINIMAL)).settings
    redactor = logs.Redactor()
    redactor.add(logs.secrets_of(settings))
    assert redactor.mask("Bearer rnd_live_0123456789 refused") == "Bearer ********** refused"

    logs.REDACTOR.add(logs.secrets_of(settings))
    structlog.get_logger().warning(
        "rollback.failed", error="401 for rnd_live_0123456789", target="backend"
    )
    event = json.loads(stream.getvalue())
    assert event["event"] == "rollback.failed"
    assert event["error"] == "401 for **********"
    assert event["level"] == "warning"
    assert "rnd_live_0123456789" not in stream.getvalue()


def test_the_libraries_warnings_come_out_as_redacted_json_events(
    stream: io.StringIO,
) -> None:
    logs.REDACTOR.add(["lib-secret-0123456789"])
    try:
        raise RuntimeError("connect to postgresql://u:lib-secret-0123456789@db failed")
    except RuntimeError:
        logging.getLogger("apscheduler.executors.default").exception("Job raised an exception")
    logging.getLogger("apscheduler.scheduler").info("Added job")  # below WARNING: not shown
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert (event["event"], event["level"], event["logger"]) == (
        "Job raised an exception",
        "error",
        "apscheduler.executors.default",
    )
    assert "RuntimeError" in event["exception"]
    assert "lib-secret-0123456789" not in line
    assert logs.MASK in event["exception"]
