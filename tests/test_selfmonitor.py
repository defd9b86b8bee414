"""The daemon's own reports to Sentry, through a real sentry-sdk client posting envelopes to the
Sentry stand-in over loopback: discovery check-ins, and errors with every secret masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from tests.test_settings import RULES, write
from watchdog import selfmonitor
from watchdog.clock import SystemClock
from watchdog.errors import ConfigError
from watchdog.sandbox import sentry
from watchdog.sandbox.events import EventLog
from watchdog.sandbox.server import serve
from watchdog.settings import Settings, load_config

SECRETS = {
    "SM_RENDER_KEY": "rnd_selfmonitor_0f9e8d7c",
    "SM_SLACK_URL": "https://hooks.slack.com/services/T0SM/B0SM/selfmonitor5b4a39",
    "SM_STATE_URL": "postgresql://watchdog:pg-pass-selfmonitor-2718@db.internal/watchdog",
    "SM_API_TOKEN": "api-token-selfmonitor-31415",
}
CONFIG = f"""rules: {RULES}
state: {{url: "${{SM_STATE_URL}}"}}
api: {{token: "${{SM_API_TOKEN}}"}}
slack: {{webhook_url: "${{SM_SLACK_URL}}"}}
targets:
  backend:
    provider: {{kind: render, service_id: srv-1, token: "${{SM_RENDER_KEY}}"}}
"""


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return load_config(write(tmp_path, CONFIG)).settings


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[sentry.EnvelopeItem]]:
    """What the Sentry stand-in received, with WATCHDOG_SENTRY_DSN pointing at it; the SDK's
    global client is closed afterwards so no other test reports anywhere."""
    items: list[sentry.EnvelopeItem] = []
    app = sentry.create_app(
        EventLog(),
        token="unused",
        clock=SystemClock(),
        organization="acme",
        projects=["watchdog"],
        envelopes=items,
    )
    with serve(app) as url:
        monkeypatch.setenv(selfmonitor.DSN_VARIABLE, url.replace("http://", "http://public@") + "/1")
        monkeypatch.delenv(selfmonitor.ENVIRONMENT_VARIABLE, raising=False)
        try:
            yield items
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.get_global_scope().set_client(None)


def sent(items: list[sentry.EnvelopeItem], kind: str) -> list[dict[str, Any]]:
    """The payloads of ``kind`` that reached the stand-in, once the SDK has sent everything."""
    sentry_sdk.flush(timeout=10)
    return [item.payload for item in items if item.type == kind]


async def test_a_discovery_run_checks_in_in_progress_then_ok(
    settings: Settings, received: list[sentry.EnvelopeItem]
) -> None:
    assert selfmonitor.init_from_env(settings)
    async with selfmonitor.checkin("watchdog-discover-backend", timedelta(seconds=30)):
        pass
    started, finished = sent(received, "check_in")
    assert (started["status"], finished["status"]) == ("in_progress", "ok")
    assert started["check_in_id"] == finished["check_in_id"]
    assert started["monitor_slug"] == "watchdog-discover-backend"
    assert isinstance(finished["duration"], float)
    assert started["monitor_config"] == {
        "schedule": {"type": "interval", "value": 1, "unit": "minute"},
        "checkin_margin": 1,
        "max_runtime": 1,
    }
    assert (finished["environment"], finished["release"]) == (
        "production",
        "rollback-watchdog@0.1.0",
    )
    assert {item.project_id for item in received} == {"1"}


async def test_a_discovery_run_that_raised_checks_in_as_an_error(
    settings: Settings, received: list[sentry.EnvelopeItem]
) -> None:
    selfmonitor.init_from_env(settings)
    with pytest.raises(RuntimeError, match="provider client crashed"):
        async with selfmonitor.checkin("watchdog-discover-backend", timedelta(seconds=30)):
            raise RuntimeError("provider client crashed")
    started, finished = sent(received, "check_in")
    assert (started["status"], finished["status"]) == ("in_progress", "error")
    assert started["check_in_id"] == finished["check_in_id"]


@pytest.mark.parametrize(
    ("every", "minutes"),
    [(timedelta(seconds=5), 1), (timedelta(seconds=90), 2), (timedelta(minutes=5), 5)],
)
async def test_the_monitor_expects_a_check_in_every_whole_minute_at_least(
    settings: Settings, received: list[sentry.EnvelopeItem], every: timedelta, minutes: int
) -> None:
    selfmonitor.init_from_env(settings)
    async with selfmonitor.checkin("watchdog-discover-backend", every):
        pass
    started, _ = sent(received, "check_in")
    assert started["monitor_config"]["schedule"] == {
        "type": "interval",
        "value": minutes,
        "unit": "minute",
    }


async def test_the_environment_is_the_one_the_variable_names(
    settings: Settings, received: list[sentry.EnvelopeItem], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(selfmonitor.ENVIRONMENT_VARIABLE, "staging")
    selfmonitor.init_from_env(settings)
    async with selfmonitor.checkin("watchdog-discover-backend", timedelta(minutes=1)):
        pass
    assert {c["environment"] for c in sent(received, "check_in")} == {"staging"}


def _connect(state_url: str, render_key: str) -> None:
    password = state_url.split(":")[2]  # a local holding a secret, as in the store modules
    raise RuntimeError(f"could not reach {state_url} with {render_key} ({len(password)})")


def test_an_unexpected_error_is_reported_with_no_secret_and_no_local_variable(
    settings: Settings, received: list[sentry.EnvelopeItem]
) -> None:
    selfmonitor.init_from_env(settings)
    try:
        _connect(SECRETS["SM_STATE_URL"], SECRETS["SM_RENDER_KEY"])
    except RuntimeError as exc:
        selfmonitor.capture(exc)
    [event] = sent(received, "event")
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"].startswith("could not reach ********** with **********")
    frames = exception["stacktrace"]["frames"]
    assert [f["function"] for f in frames][-1] == "_connect"
    assert all("vars" not in frame for frame in frames)
    text = json.dumps(event)
    assert [s for s in SECRETS.values() if s in text] == []


def test_a_job_error_logged_by_the_scheduler_is_reported_without_the_request_logs_before_it(
    settings: Settings, received: list[sentry.EnvelopeItem]
) -> None:
    selfmonitor.init_from_env(settings)
    # A line as httpx logs for every request (the URL is a Slack webhook: a secret; at
    # WARNING so the root logger's level lets it through), then what APScheduler logs when
    # a job raises.
    logging.getLogger("httpx").warning(
        'HTTP Request: POST %s "HTTP/1.1 200 OK"', SECRETS["SM_SLACK_URL"]
    )
    try:
        raise ValueError(f"bad payload for {SECRETS['SM_SLACK_URL']}")
    except ValueError:
        logging.getLogger("apscheduler.executors.default").exception(
            'Job "discover (trigger: interval[0:00:30])" raised an exception'
        )
    [event] = sent(received, "event")
    assert event["logentry"]["message"].startswith('Job "discover')
    assert event["exception"]["values"][0]["value"] == "bad payload for **********"
    assert not event.get("breadcrumbs", {}).get("values")
    assert SECRETS["SM_SLACK_URL"] not in json.dumps(event)


async def test_without_a_dsn_nothing_is_reported_and_the_job_still_runs(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(selfmonitor.DSN_VARIABLE, raising=False)
    assert selfmonitor.init_from_env(settings) is False
    ran = []
    async with selfmonitor.checkin("watchdog-discover-backend", timedelta(seconds=30)):
        ran.append(True)
    selfmonitor.capture(RuntimeError("nowhere to go"))
    assert ran == [True]
    assert not sentry_sdk.is_initialized()


def test_a_malformed_dsn_is_a_config_error_that_does_not_repeat_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(selfmonitor.DSN_VARIABLE, "https://sentry.example/secret-project-path")
    with pytest.raises(ConfigError) as info:
        selfmonitor.init_from_env(settings)
    message = str(info.value)
    assert "WATCHDOG_SENTRY_DSN" in message
    assert "public key" in message
    assert "sentry.example" not in message
    assert not sentry_sdk.is_initialized()
