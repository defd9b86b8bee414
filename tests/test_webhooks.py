"""Deploy webhooks over real HTTP on loopback: deliveries signed as Vercel, Render and GitHub
sign them (``watchdog.sandbox.webhooks`` and the stand-ins' own senders) reach a started daemon
on a SQLite store; Render's deliveries are looked up in the Render stand-in of the whole sandbox.
The secrets are the contract's own test-vector secrets, so its literal vectors verify here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
import structlog

from tests.conftest import T0
from tests.providers.helpers import refused_url
from tests.test_api import first_tick, running, serving
from watchdog.api import create_api
from watchdog.clock import ManualClock
from watchdog.daemon import Watchdog
from watchdog.model import Deployment
from watchdog.sandbox import render, stack, vercel, webhooks
from watchdog.sandbox.deployments import (
    BAD_RELEASE,
    GOOD_RELEASE,
    Cause,
    Delivery,
    DeploymentHistory,
    GoLive,
    good_then_bad,
)
from watchdog.settings import LoadedConfig, load_config
from watchdog.store.sql import SqlStore

# The contract's test vectors (api-contracts.md §1.6, §2.4, §7.1).
VERCEL_SECRET = "test-secret"
RENDER_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GITHUB_SECRET = "It's a Secret to Everybody"
SECRETS = (VERCEL_SECRET, RENDER_SECRET, GITHUB_SECRET)
ENV = {
    **stack.ENV,
    "SANDBOX_VERCEL_TOKEN": "vercel-sandbox-token",
    "VERCEL_WEBHOOK_SECRET": VERCEL_SECRET,
    "RENDER_WEBHOOK_SECRET": RENDER_SECRET,
    "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
}
WEBHOOKS = """\
webhooks: {vercel_secret: "${VERCEL_WEBHOOK_SECRET}", render_secret: "${RENDER_WEBHOOK_SECRET}",
           github_secret: "${GITHUB_WEBHOOK_SECRET}"}
"""
TEAM = "team_sandbox"
PROJECT_ID = "prj_acmeweb"
REPOSITORY = "acme/web"
SHA = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed"
NEW_RELEASE = "0ddba11c0ffee5eed0ddba11c0ffee5eed0ddba1"
SOURCES = ("vercel", "render", "github")


def configured(
    tmp_path: Path, sandbox: stack.Stack, webhooks_section: str = WEBHOOKS
) -> LoadedConfig:
    """The sandbox's config (no discovery: only webhooks start watches) with a Vercel target and
    a git target beside the Render one."""
    text = sandbox.config(tmp_path, interval="15s", window="2m")
    assert "window: 2m}" in text
    text = text.replace("window: 2m}", "window: 2m, discover: null}")
    text += f"""\
  frontend:
    provider: {{kind: vercel, api_url: "{refused_url()}", project: {PROJECT_ID}, team_id: {TEAM},
               token: "${{SANDBOX_VERCEL_TOKEN}}"}}
  web:
    provider: {{kind: git, repository: "https://github.com/{REPOSITORY}.git",
               workdir: "{tmp_path}/git"}}
"""
    path = tmp_path / "watchdog.yaml"
    path.write_text(text + webhooks_section)
    return load_config(path)


@pytest.fixture
def sandbox(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[stack.Stack]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with stack.running(clock, delay=timedelta(0)) as made:
        yield made


@pytest.fixture
async def daemon(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> AsyncIterator[Watchdog]:
    async with running(configured(tmp_path, sandbox), store, clock) as made:
        yield made


@pytest.fixture
async def client(daemon: Watchdog, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a started daemon's API."""
    await daemon.start()
    async with serving(create_api(daemon, clock=clock)) as made:
        yield made


@dataclass
class Kit:
    """Builds deliveries about the sandbox's deployments, signed as each service signs."""

    sandbox: stack.Stack
    clock: ManualClock
    web: DeploymentHistory  # the Vercel project's deployments

    def vercel(
        self,
        event: str = "deployment.succeeded",
        deployment: str = "dep-2",
        *,
        team_id: str = TEAM,
        delivery_id: str = "dlv_1",
    ) -> Delivery:
        return vercel.vercel_webhook(
            self.web,
            deployment,
            event,
            team_id=team_id,
            project_id=PROJECT_ID,
            secret=VERCEL_SECRET,
            delivery_id=delivery_id,
        )

    def vercel_preview(self) -> Delivery:
        self.web.add_preview("dep-p", BAD_RELEASE, created_at=self.clock.now())
        return self.vercel(deployment="dep-p")

    def render(
        self,
        service_id: str = stack.SERVICE,
        *,
        release: str = NEW_RELEASE,
        cause: Cause = Cause.NEW_COMMIT,
        outcome: GoLive = GoLive.OK,
    ) -> Delivery:
        """A new deploy of the backend, ended (at once: the sandbox's delay is zero)."""
        self.sandbox.backend.deploy(release, cause=cause, outcome=outcome)
        event = self.sandbox.backend.finished()[-1]
        return render.render_webhook(
            self.sandbox.backend,
            event.id,
            service_id=service_id,
            secret=RENDER_SECRET,
            msg_id="msg_1",
        )

    def github(self, event: str = "deployment_status", **status: Any) -> Delivery:
        payload = webhooks.deployment_status(REPOSITORY, SHA, at=self.clock.now(), **status)
        return webhooks.github(event, payload, secret=GITHUB_SECRET, delivery_id="guid-1")

    def good(self, source: str) -> Delivery:
        return {"vercel": self.vercel, "render": self.render, "github": self.github}[source]()


@pytest.fixture
def kit(sandbox: stack.Stack, clock: ManualClock) -> Kit:
    return Kit(sandbox, clock, good_then_bad("acme-web", clock))


def resigned(
    source: str, delivery: Delivery, *, secret: str | None = None, at: datetime = T0
) -> Delivery:
    """``delivery``'s payload signed again, with another secret or (Render) at another time."""
    payload = json.loads(delivery.body)
    match source:
        case "vercel":
            return webhooks.vercel(payload, secret=secret or VERCEL_SECRET)
        case "render":
            msg_id = delivery.headers["webhook-id"]
            return webhooks.render(payload, secret=secret or RENDER_SECRET, msg_id=msg_id, at=at)
        case _:
            event, guid = delivery.headers["x-github-event"], delivery.headers["x-github-delivery"]
            return webhooks.github(event, payload, secret=secret or GITHUB_SECRET, delivery_id=guid)


def without(delivery: Delivery, *names: str) -> Delivery:
    return Delivery(delivery.body, {k: v for k, v in delivery.headers.items() if k not in names})


async def post(client: httpx.AsyncClient, source: str, delivery: Delivery) -> httpx.Response:
    return await webhooks.send(client, f"/webhooks/{source}", delivery)


async def nothing_recorded(store: SqlStore) -> None:
    assert await store.recent_watches(10) == []
    for target, deployment in [("frontend", "dep-2"), ("backend", "dep-3"), ("web", SHA)]:
        assert await store.deployment(target, deployment) is None


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_the_senders_sign_as_the_contract_says() -> None:
    vercel_hook = webhooks.vercel({"type": "deployment.succeeded"}, secret="test-secret")
    assert vercel_hook.body == b'{"type":"deployment.succeeded"}'
    assert vercel_hook.headers["x-vercel-signature"] == "642fdc53c985636635941582069b9582e420da65"
    assert webhooks.github_signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    render_hook = webhooks.render({"test": 1}, secret=RENDER_SECRET, msg_id="msg_1", at=T0)
    key = base64.b64decode(RENDER_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, b"msg_1.1769601600." + render_hook.body, hashlib.sha256).digest()
    assert dict(render_hook.headers) == {
        "content-type": "application/json",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1769601600",  # T0 in unix seconds
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
    github_hook = webhooks.github("ping", {}, secret="s", delivery_id="guid-1")
    assert github_hook.headers["x-hub-signature-256"] == webhooks.github_signature("s", b"{}")
    assert (github_hook.headers["x-github-event"], github_hook.headers["x-github-delivery"]) == (
        "ping",
        "guid-1",
    )


VECTORS = {  # the contract's literal vectors, sent as they are: verified, then not a deploy
    "vercel": (
        b'{"type":"deployment.succeeded"}',
        {"x-vercel-signature": "642fdc53c985636635941582069b9582e420da65"},
        "unexpected payload: id: Field required",
    ),
    "render": (
        b'{"test": 2432232314}',
        {
            "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        },
        "unexpected payload: type: Field required",
    ),
    "github": (
        b"Hello, World!",
        {
            "x-hub-signature-256": "sha256="
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "x-github-event": "deployment_status",
            "x-github-delivery": "guid-vector",
        },
        "expected a JSON body (content type application/json)",
    ),
}
SIGNATURE = {
    "vercel": "x-vercel-signature",
    "render": "webhook-signature",
    "github": "x-hub-signature-256",
}


@pytest.mark.parametrize("source", SOURCES)
async def test_the_contracts_vectors_verify_and_one_changed_byte_does_not(
    client: httpx.AsyncClient, store: SqlStore, clock: ManualClock, source: str
) -> None:
    body, headers, problem = VECTORS[source]
    clock.set(datetime.fromtimestamp(1614265330, UTC))  # the Render vector's own time
    verified = await post(client, source, Delivery(body, headers))
    assert (verified.status_code, verified.json()) == (400, {"detail": problem})
    changed = await post(client, source, Delivery(body[:-1] + bytes([body[-1] ^ 1]), headers))
    assert changed.status_code == 401
    await nothing_recorded(store)


EXPECTED = {  # what the good delivery of each source announces
    "vercel": Deployment("frontend", "dep-2", T0, commit=BAD_RELEASE),
    "render": Deployment("backend", "dep-3", T0, commit=NEW_RELEASE),
    "github": Deployment("web", SHA, T0, commit=SHA),
}


@pytest.mark.parametrize("source", SOURCES)
async def test_a_good_delivery_watches_the_deploy_once_and_a_redelivery_changes_nothing(
    client: httpx.AsyncClient, store: SqlStore, kit: Kit, source: str
) -> None:
    delivery = kit.good(source)
    with structlog.testing.capture_logs() as logs:
        first = await post(client, source, delivery)
        assert first.status_code == 202, first.text
        watch_id = first.json()["watch_id"]
        expected = EXPECTED[source]
        assert first.json() == {
            "status": "watching",
            "watch_id": watch_id,
            "watches": {expected.target: watch_id},
        }
        again = await post(client, source, delivery)
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    await first_tick(store, watch_id)
    (watch,) = await store.recent_watches(10)
    assert (watch.id, watch.target, watch.deployment_id) == (watch_id, expected.target, expected.id)
    assert await store.deployment(expected.target, expected.id) == expected
    (accepted,) = events(logs, "webhook.accepted")
    assert (accepted["source"], accepted["watch"]) == (source, watch_id)
    assert len(events(logs, "webhook.redelivered")) == 1


async def test_another_delivery_of_the_same_deploy_is_the_same_watch(
    client: httpx.AsyncClient, store: SqlStore, kit: Kit
) -> None:
    first = await post(client, "vercel", kit.vercel())
    ready = await post(client, "vercel", kit.vercel("deployment.ready", delivery_id="dlv_2"))
    assert (first.status_code, ready.status_code) == (202, 202)
    assert ready.json()["watch_id"] == first.json()["watch_id"]
    await first_tick(store, first.json()["watch_id"])
    assert len(await store.recent_watches(10)) == 1


def _forged(source: str, delivery: Delivery) -> Delivery:
    return Delivery(delivery.body + b" ", delivery.headers)  # the same JSON, other bytes


def _wrong_secret(source: str, delivery: Delivery) -> Delivery:
    other = {"render": "whsec_" + base64.b64encode(b"another render secret").decode()}
    return resigned(source, delivery, secret=other.get(source, "another secret"))


def _unsigned(source: str, delivery: Delivery) -> Delivery:
    return without(delivery, SIGNATURE[source])


def _signed_elsewhere(source: str, delivery: Delivery) -> Delivery:
    """Another body's valid signature on this body."""
    body = json.dumps({**json.loads(delivery.body), "extra": 1}).encode()
    other = resigned(source, Delivery(body, delivery.headers))
    return Delivery(
        delivery.body, {**delivery.headers, SIGNATURE[source]: other.headers[SIGNATURE[source]]}
    )


TAMPERED: dict[str, Callable[[str, Delivery], Delivery]] = {
    "forged-body": _forged,
    "wrong-secret": _wrong_secret,
    "no-signature": _unsigned,
    "signature-of-another-body": _signed_elsewhere,
}


@pytest.mark.parametrize("how", TAMPERED)
@pytest.mark.parametrize("source", SOURCES)
async def test_a_tampered_delivery_is_401_and_records_nothing(
    client: httpx.AsyncClient, store: SqlStore, kit: Kit, source: str, how: str
) -> None:
    good = kit.good(source)
    with structlog.testing.capture_logs() as logs:
        refused = await post(client, source, TAMPERED[how](source, good))
    assert refused.status_code == 401
    (rejected,) = events(logs, "webhook.rejected")
    assert rejected["source"] == source
    await nothing_recorded(store)
    for secret in SECRETS:
        assert secret not in refused.text
        assert secret not in repr(logs)
    assert good.body.decode() not in repr(logs)
    # Nothing remembered either: the genuine delivery with the same id is still new.
    assert (await post(client, source, good)).status_code == 202


@pytest.mark.parametrize(
    ("offset", "answer"),
    [
        (-timedelta(minutes=5, seconds=1), 401),  # stale
        (timedelta(minutes=5, seconds=1), 401),  # from the future
        (-timedelta(minutes=5), 202),  # at the edge of the tolerance
        (timedelta(minutes=5), 202),
    ],
    ids=["stale", "future", "old-edge", "future-edge"],
)
async def test_a_render_timestamp_must_be_within_five_minutes(
    client: httpx.AsyncClient, store: SqlStore, kit: Kit, offset: timedelta, answer: int
) -> None:
    delivery = resigned("render", kit.render(), at=T0 + offset)
    response = await post(client, "render", delivery)
    assert response.status_code == answer, response.text
    if answer == 401:
        assert "more than 5m from now" in response.json()["detail"]
        await nothing_recorded(store)
    else:
        await first_tick(store, response.json()["watch_id"])


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"webhook-timestamp": "soon"}, "webhook-timestamp is not a time in unix seconds"),
        ({"webhook-id": None}, "expected webhook-id, webhook-timestamp and webhook-signature"),
        ({"webhook-signature": "v1,AAAA v2,BBBB"}, "no webhook-signature matches the body"),
    ],
    ids=["timestamp-not-a-number", "no-id", "no-matching-signature"],
)
async def test_bad_render_headers_are_401_naming_what_is_wrong(
    client: httpx.AsyncClient,
    store: SqlStore,
    kit: Kit,
    headers: dict[str, str | None],
    detail: str,
) -> None:
    good = kit.render()
    changed = {k: v for k, v in {**good.headers, **headers}.items() if v is not None}
    response = await post(client, "render", Delivery(good.body, changed))
    assert (response.status_code, response.json()) == (401, {"detail": detail})
    await nothing_recorded(store)


async def test_one_of_several_render_signatures_may_match(
    client: httpx.AsyncClient, store: SqlStore, kit: Kit
) -> None:
    good = kit.render()
    rotated = f"v1,bm90IHRoaXMgb25l {good.headers['webhook-signature']}"  # a secret being rotated
    response = await post(
        client, "render", Delivery(good.body, {**good.headers, "webhook-signature": rotated})
    )
    assert response.status_code == 202
    await first_tick(store, response.json()["watch_id"])


IGNORED: dict[str, tuple[str, Callable[[Kit], Delivery], str]] = {
    "vercel-created": (
        "vercel",
        lambda kit: kit.vercel("deployment.created"),
        "a deployment.created event starts no watch (only deployment.ready, deployment.succeeded)",
    ),
    "vercel-error": (
        "vercel",
        lambda kit: kit.vercel("deployment.error"),
        "a deployment.error event starts no watch (only deployment.ready, deployment.succeeded)",
    ),
    "vercel-preview": (
        "vercel",
        Kit.vercel_preview,
        "deployment dep-p is for preview, not production",
    ),
    "vercel-other-team": (
        "vercel",
        lambda kit: kit.vercel(team_id="team_other"),
        f"no target deploys Vercel project {PROJECT_ID} (acme-web)",
    ),
    "vercel-other-project": (
        "vercel",
        lambda kit: vercel.vercel_webhook(
            good_then_bad("other-web", kit.clock),
            "dep-2",
            "deployment.succeeded",
            team_id=TEAM,
            project_id="prj_other",
            secret=VERCEL_SECRET,
            delivery_id="dlv_1",
        ),
        "no target deploys Vercel project prj_other (other-web)",
    ),
    "render-failed": (
        "render",
        lambda kit: kit.render(outcome=GoLive.FAIL),
        "Render event evt-1: the deploy ended failed",
    ),
    "render-rollback": (
        "render",
        lambda kit: kit.render(release=GOOD_RELEASE, cause=Cause.ROLLBACK),
        "deploy dep-3 is a rollback, not a new release",
    ),
    "render-other-service": (
        "render",
        lambda kit: kit.render(service_id="srv-other"),
        "no target deploys Render service srv-other",
    ),
    "render-other-event": (
        "render",
        lambda kit: webhooks.render(
            {
                "type": "server_failed",
                "timestamp": "2026-01-28T12:00:00Z",
                "data": {"id": "evt-9", "serviceId": stack.SERVICE},
            },
            secret=RENDER_SECRET,
            msg_id="msg_1",
            at=T0,
        ),
        "a server_failed event starts no watch (only deploy_ended)",
    ),
    "github-failure": (
        "github",
        lambda kit: kit.github(state="failure"),
        f"deployment of {SHA} is failure, not success",
    ),
    "github-staging": (
        "github",
        lambda kit: kit.github(environment="staging"),
        f"deployment of {SHA} is to staging, not production",
    ),
    "github-other-repository": (
        "github",
        lambda kit: webhooks.github(
            "deployment_status",
            webhooks.deployment_status("acme/webby", SHA, at=T0),
            secret=GITHUB_SECRET,
            delivery_id="guid-1",
        ),
        "no git target deploys repository acme/webby",
    ),
    "github-ping": (
        "github",
        lambda kit: webhooks.github(
            "ping",
            {"zen": "Keep it logically awesome."},
            secret=GITHUB_SECRET,
            delivery_id="guid-1",
        ),
        "a ping event starts no watch (only deployment_status)",
    ),
}


@pytest.mark.parametrize("case", IGNORED)
async def test_anything_but_a_successful_production_deploy_is_ignored_with_the_reason(
    client: httpx.AsyncClient, store: SqlStore, kit: Kit, case: str
) -> None:
    source, build, reason = IGNORED[case]
    delivery = build(kit)
    with structlog.testing.capture_logs() as logs:
        response = await post(client, source, delivery)
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ignored", "reason": reason},
    )
    (ignored,) = events(logs, "webhook.ignored")
    assert (ignored["source"], ignored["reason"]) == (source, reason)
    again = await post(client, source, delivery)
    assert again.json() == {"status": "duplicate"}
    assert await store.recent_watches(10) == []


async def test_a_production_environment_is_matched_whatever_its_case(
    client: httpx.AsyncClient, store: SqlStore, kit: Kit
) -> None:
    response = await post(client, "github", kit.github(environment="Production"))  # Vercel's app
    assert response.status_code == 202
    await first_tick(store, response.json()["watch_id"])


async def test_a_render_api_failure_is_502_and_the_retry_is_watched(
    client: httpx.AsyncClient, store: SqlStore, kit: Kit, sandbox: stack.Stack
) -> None:
    delivery = kit.render()
    sandbox.backend_faults.fail_next(2, 500, operation="get_event")
    with stamina.set_testing(True, attempts=2), structlog.testing.capture_logs() as logs:
        failed = await post(client, "render", delivery)
    assert failed.status_code == 502
    assert failed.json()["detail"].startswith(
        "could not ask Render about event evt-1: render: HTTP 500"
    )
    (lookup,) = events(logs, "webhook.lookup_failed")
    assert (lookup["render_event"], lookup["error"]) == (
        "evt-1",
        "render: HTTP 500: An unexpected internal error occurred",
    )
    await nothing_recorded(store)
    retried = await post(client, "render", delivery)  # Render's own retry: the same delivery
    assert retried.status_code == 202
    await first_tick(store, retried.json()["watch_id"])


async def test_a_signed_delivery_that_is_not_the_documented_shape_is_400_naming_the_field(
    client: httpx.AsyncClient, store: SqlStore, kit: Kit
) -> None:
    envelope = json.loads(kit.vercel().body)
    del envelope["payload"]["project"]
    response = await post(client, "vercel", webhooks.vercel(envelope, secret=VERCEL_SECRET))
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "unexpected payload: payload.project: Field required"},
    )
    unnamed = without(kit.github(), "x-github-delivery")
    response = await post(client, "github", unnamed)
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "expected X-GitHub-Event and X-GitHub-Delivery"},
    )
    await nothing_recorded(store)
    assert (await post(client, "vercel", kit.vercel())).status_code == 202  # not remembered


@pytest.mark.parametrize(
    ("section", "unset", "reasons"),
    [
        ("", None, {s: f"webhooks.{s}_secret is not configured" for s in SOURCES}),
        (
            WEBHOOKS,
            "VERCEL_WEBHOOK_SECRET",
            {
                "vercel": "webhooks.vercel_secret: environment variable VERCEL_WEBHOOK_SECRET is not set"
            },
        ),
    ],
    ids=["no-section", "variable-unset"],
)
async def test_without_a_usable_secret_every_delivery_is_401_and_said_once(
    tmp_path: Path,
    sandbox: stack.Stack,
    store: SqlStore,
    clock: ManualClock,
    kit: Kit,
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    unset: str | None,
    reasons: dict[str, str],
) -> None:
    if unset:
        monkeypatch.delenv(unset)
    async with running(configured(tmp_path, sandbox, section), store, clock) as daemon:
        await daemon.start()
        async with serving(create_api(daemon, clock=clock)) as client:
            with structlog.testing.capture_logs() as logs:
                for source in reasons:
                    delivery = kit.good(source)
                    for _ in range(2):
                        response = await post(client, source, delivery)
                        assert response.status_code == 401
                        assert response.json() == {
                            "detail": f"webhooks.{source}_secret is not usable here: "
                            "nothing can be verified"
                        }
    said = [(e["source"], e["reason"]) for e in events(logs, "webhook.secret_missing")]
    assert [source for source, _ in said] == list(reasons)  # once each
    for source, reason in said:
        assert reason.endswith(reasons[source])  # after the file and line, when there are
    await nothing_recorded(store)


async def test_a_render_secret_that_is_not_base64_is_unusable(
    tmp_path: Path,
    sandbox: stack.Stack,
    store: SqlStore,
    clock: ManualClock,
    kit: Kit,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RENDER_WEBHOOK_SECRET", "whsec_not*base64")
    async with running(configured(tmp_path, sandbox), store, clock) as daemon:
        await daemon.start()
        async with serving(create_api(daemon, clock=clock)) as client:
            with structlog.testing.capture_logs() as logs:
                response = await post(client, "render", kit.render())
    assert response.status_code == 401
    (missing,) = events(logs, "webhook.secret_missing")
    assert missing["reason"] == "webhooks.render_secret: expected whsec_ followed by base64"
    assert "not*base64" not in repr(logs)
    await nothing_recorded(store)


async def test_before_the_daemon_is_ready_a_verified_delivery_is_503_and_not_remembered(
    daemon: Watchdog, store: SqlStore, clock: ManualClock, kit: Kit
) -> None:
    delivery = kit.github()
    async with serving(create_api(daemon, clock=clock)) as client:
        early = await post(client, "github", delivery)
        assert (early.status_code, early.json()) == (503, {"detail": "the daemon is not ready"})
        await nothing_recorded(store)
        await daemon.start()
        later = await post(client, "github", delivery)
        assert later.status_code == 202
        await first_tick(store, later.json()["watch_id"])


async def test_the_openapi_schema_describes_the_webhooks(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for source in SOURCES:
        operation = paths[f"/webhooks/{source}"]["post"]
        assert "security" not in operation  # signed by the provider, not the bearer token
        assert {"200", "202", "400", "401", "503"} <= set(operation["responses"])
        assert "application/json" in operation["requestBody"]["content"]
    assert "502" in paths["/webhooks/render"]["post"]["responses"]
    headers = {p["name"] for p in paths["/webhooks/render"]["post"]["parameters"]}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
