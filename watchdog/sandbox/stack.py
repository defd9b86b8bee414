"""The whole sandbox at once: the toy app, the Sentry, Render and Slack stand-ins, wired so
that a rollback through the Render stand-in really changes the release the toy app serves,
and a config file that points the watchdog at all of it. Used by the end-to-end tests, and
by the demo and drills."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from watchdog.clock import Clock
from watchdog.sandbox import render, sentry, slack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, DeploymentHistory, good_then_bad
from watchdog.sandbox.events import EventLog
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve

PROJECT = "acme-api"
SERVICE = "srv-acmeapi"
SLACK_PATH = "/services/T0SANDBOX/B0SANDBOX/sandbox"
# Sandbox credentials: the config refers to them through these variables, as a real one would.
ENV = {
    "SANDBOX_SENTRY_TOKEN": "sntrys_sandbox_token",
    "SANDBOX_RENDER_KEY": "rnd_sandbox_key",
    "SANDBOX_SMOKE_PASSWORD": "sandbox-smoke-password",
}
BROKEN = toyapp.Faults(error_fraction=0.05, login_broken=True)


@dataclass
class Stack:
    """Handles on every running stand-in, for driving and inspecting them."""

    log: EventLog
    app: toyapp.ToyState
    backend: DeploymentHistory
    backend_faults: Faults
    channel: slack.SlackChannel
    urls: dict[str, str]

    def config(self, state_dir: Path, *, interval: str = "1s", window: str = "30s") -> str:
        """A watchdog config (YAML) for this stack, its state and incidents in ``state_dir``."""
        return f"""\
state: {{url: "sqlite:///{state_dir}/state.db"}}
watch: {{interval: {interval}, window: {window}}}
verify: {{within: 20s}}
rules: {Path(__file__).parents[2] / "config" / "rules.yaml"}
sentry: {{api_url: "{self.urls["sentry"]}", organization: acme,
          token: "${{SANDBOX_SENTRY_TOKEN}}", lookback: 30s}}
slack: {{webhook_url: "{self.urls["slack"]}{SLACK_PATH}"}}
incidents: {{dir: "{state_dir}/incidents"}}
targets:
  backend:
{target_yaml(self.urls)}"""


def target_yaml(urls: dict[str, str]) -> str:
    """The sandbox backend's target section (indented under its name): the Render provider,
    Sentry, the two health checks and the critical login flow, on the stand-ins at ``urls``."""
    app = urls["app"]
    return f"""\
    provider: {{kind: render, api_url: "{urls["render"]}", service_id: {SERVICE},
               token: "${{SANDBOX_RENDER_KEY}}", live_timeout: 1m}}
    sentry: {{project: {PROJECT}, environment: production}}
    health:
      - {{name: api, url: "{app}/health", expect_json: {{status: healthy}}}}
      - {{name: database, url: "{app}/api/health/database", expect_json: {{status: connected}}}}
    flows:
      - name: auth
        critical: true
        steps:
          - {{method: POST, url: "{app}/api/auth/login", capture: {{token: token}},
             json: {{email: smoke@acme.example, password: "${{SANDBOX_SMOKE_PASSWORD}}"}}}}
          - {{url: "{app}/api/dashboard", headers: {{Authorization: "Bearer {{{{token}}}}"}}}}
"""


@contextmanager
def running(clock: Clock, *, delay: timedelta = timedelta(seconds=2)) -> Iterator[Stack]:
    """Start every stand-in on loopback. The backend serves the bad release (``dep-2``: 5 %
    errors and a broken login) after the good one (``dep-1``); rolling back fixes the app."""
    log = EventLog()
    state = toyapp.ToyState("unreleased", password=ENV["SANDBOX_SMOKE_PASSWORD"])
    state.set_faults(BROKEN, BAD_RELEASE)
    backend = good_then_bad(PROJECT, clock, delay=delay, on_live=state.set_live)
    backend_faults, channel = Faults(), slack.SlackChannel()
    apps = {
        "app": toyapp.create_app(
            log, clock=clock, project=PROJECT, environment="production", state=state
        ),
        "sentry": sentry.create_app(
            log,
            token=ENV["SANDBOX_SENTRY_TOKEN"],
            clock=clock,
            organization="acme",
            projects=[PROJECT],
        ),
        "render": render.create_app(
            backend,
            token=ENV["SANDBOX_RENDER_KEY"],
            service_id=SERVICE,
            clock=clock,
            faults=backend_faults,
        ),
        "slack": slack.create_app(channel, path=SLACK_PATH, clock=clock),
    }
    with ExitStack() as stack:
        urls = {name: stack.enter_context(serve(app)) for name, app in apps.items()}
        stack.callback(backend_faults.clear)
        yield Stack(log, state, backend, backend_faults, channel, urls)
