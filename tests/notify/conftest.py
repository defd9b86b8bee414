"""Fixtures for the notifier tests: the Slack stand-in on loopback with its fault switch, a
config whose secrets are all set (so a test can prove none of them reaches a message), and a
SQLite store to write watches into."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from watchdog.clock import ManualClock
from watchdog.sandbox import slack
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve
from watchdog.settings import Settings, load_config

HOOK = "/services/T0ACME/B0WATCH/hooksecret7f3a9c"
SECRETS = {
    "SLACK_WEBHOOK_URL": f"https://hooks.slack.example{HOOK}",
    "WATCHDOG_API_TOKEN": "api-token-51a7e2",
    "SENTRY_AUTH_TOKEN": "sntrys_token_8c1d44",
    "VERCEL_TOKEN": "vercel_token_0b9e13",
    "RENDER_API_KEY": "rnd_key_6f2a90",
    "DATABASE_URL": "postgresql://app:dbpass-4e7b21@db.internal:5432/app",
    "PAGER_URL": "https://pager.example/hooks/pagerpath-93d1c5",
    "PAGER_TOKEN": "pager-bearer-2c8f66",
}


WEBHOOKS = 'notify_webhooks: [{name: pager, url: "${PAGER_URL}", token: "${PAGER_TOKEN}"}]\n'


def config_text(webhooks: str = WEBHOOKS) -> str:
    return f"""
rules: {REPO / "config" / "rules.yaml"}
api: {{listen: "127.0.0.1:8080", token: "${{WATCHDOG_API_TOKEN}}"}}
sentry: {{organization: acme, token: "${{SENTRY_AUTH_TOKEN}}"}}
slack: {{webhook_url: "${{SLACK_WEBHOOK_URL}}"}}
{webhooks}targets:
  frontend:
    provider: {{kind: vercel, project: acme-web, token: "${{VERCEL_TOKEN}}"}}
    sentry: {{project: acme-web}}
    health: [{{name: home, url: "https://acme.example"}}]
  backend:
    provider: {{kind: render, service_id: srv-123, token: "${{RENDER_API_KEY}}"}}
    sentry: {{project: acme-api}}
    health: [{{name: api, url: "https://api.acme.example/health"}}]
  database:
    provider: {{kind: sql-migrations, dsn: "${{DATABASE_URL}}", rollback_dir: migrations/rollback}}
    database: {{dsn: "${{DATABASE_URL}}"}}
    integrity: {{tables: [organizations, appointments, contacts]}}
escalation:
  - {{name: on-call, after: 0m, mention: "<!subteam^S0ONCALL>"}}
  - {{name: team-lead, after: 5m, mention: "<@U0LEAD>"}}
"""


def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhooks: str = WEBHOOKS) -> Settings:
    """The config with every secret set; ``webhooks`` replaces its ``notify_webhooks``."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "watchdog.yaml"
    path.write_text(config_text(webhooks))
    return load_config(path).settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return load(tmp_path, monkeypatch)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def channel() -> slack.SlackChannel:
    return slack.SlackChannel()


@pytest.fixture
def slack_url(channel: slack.SlackChannel, clock: ManualClock, faults: Faults) -> Iterator[str]:
    """The stand-in's origin; the webhook is at ``HOOK``."""
    with serve(slack.create_app(channel, path=HOOK, clock=clock, faults=faults)) as url:
        try:
            yield url
        finally:
            faults.clear()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as made:
        yield made
