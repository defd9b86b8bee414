"""Logs are JSON events on the stream given (stderr by default), and secrets never show."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.test_settings import MINIMAL, write
from watchdog import logs
from watchdog.settings import load_config


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure(out)
    yield out
    structlog.reset_defaults()


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
