"""Messages as a person reading Slack sees them, composed from watches in a real SQLite store
the way the daemon leaves them: the runbook template's deployment, reason, rollback time
against its target, status, verification lines, next steps and a link to the watch."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import timedelta

import httpx
import pytest

from watchdog.errors import NotifyError
from watchdog.model import Verdict
from watchdog.notify.base import Message
from watchdog.notify.blocks import clip
from watchdog.notify.messages import KINDS, compose
from watchdog.notify.slack import SlackNotifier
from watchdog.notify.wording import rollback_time, span, verification_lines
from watchdog.sandbox import slack
from watchdog.secrets import Secret
from watchdog.settings import EscalationStep, Settings
from watchdog.signals.base import Failure, ProbeError
from watchdog.store.records import ActionRecord, ActionStatus, Outcome
from watchdog.store.sql import SqlStore

from .conftest import HOOK, SECRETS
from .story import T0, Story, rolled_back

REASON = (
    "error_rate 2.5 % over 5,400 requests > 1 % (95 % lower bound 2.12 %) for 2 readings in "
    "the first 10m → rollback, immediate"
)


def shown(message: Message) -> str:
    """What Slack shows of the blocks, one line per line, with its escapes undone."""
    texts = []
    for block in message.blocks:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [element["text"] for element in block.get("elements", ())]
    return "\n".join(texts).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def link(watch_id: str) -> str:
    return f"http://127.0.0.1:8080/api/watches/{watch_id}"


async def test_an_executed_rollback_reads_like_the_runbook_template(
    store: SqlStore, settings: Settings
) -> None:
    story = await rolled_back(store)
    message = await compose(store, settings, story.watch.id, "rollback_executed")
    lines = shown(message).splitlines()
    assert lines[:5] == [
        "🔄 ROLLBACK EXECUTED",
        "*Deployment:* `dep-2` on *backend*, release `rel-2f9c`, rolled back to `dep-1` via render",
        f"*Reason:* {REASON}",
        "*Rollback time:* 4 min 12 s of the 5 min allowed ✅ (live at 12:04:57 UTC)",
        "*Status:* ✅ Complete",
    ]
    assert lines[5:9] == [
        "*Verification:*",
        "• *Backend:* ✅ Healthy",
        "• *Database:* ✅ Healthy",
        "• *Error rate:* ✅ 0.05 % over 5,400 requests < 0.1 % (normal)",
    ]
    assert "*Next steps:*" in lines
    assert "1. Root cause analysis: what broke in `dep-2`" in lines
    assert f"<{link(story.watch.id)}|Watch {story.watch.id[:8]}>" in lines[-1]
    assert message.text.startswith(
        "🔄 Rolled back backend dep-2 to dep-1 in 4 min 12 s (5 min allowed), verified. "
        f"Reason: {REASON}."
    )
    assert message.text.endswith(link(story.watch.id))
    assert message.data["url"] == link(story.watch.id)
    assert message.data["actions"][0]["seconds"] == 252.0
    assert (message.data["rollback_seconds"], message.data["target_seconds"]) == (252.0, 300)
    assert message.data["decision"]["rule"] == "error-rate-critical"


async def test_slack_control_characters_from_records_are_escaped_in_blocks(
    store: SqlStore, settings: Settings
) -> None:
    story = await rolled_back(store)
    message = await compose(store, settings, story.watch.id, "rollback_executed")
    facts = message.blocks[1]["text"]["text"]
    assert "requests &gt; 1 %" in facts
    assert ">" not in facts.replace("→", "")
    assert "> 1 %" in message.text  # the plain fallback stays plain


async def test_a_rollback_over_its_target_time_says_so(store: SqlStore, settings: Settings) -> None:
    story = await rolled_back(store, took=timedelta(minutes=6, seconds=3))
    message = await compose(store, settings, story.watch.id, "rollback_executed")
    assert "*Rollback time:* 6 min 3 s, over the 5 min allowed ⚠️ (live at 12:06:48 UTC)" in shown(
        message
    )


async def test_the_link_uses_the_public_url_when_set(store: SqlStore, settings: Settings) -> None:
    public = settings.api.model_copy(update={"public_url": "https://watchdog.acme.example/"})
    settings = settings.model_copy(update={"api": public})
    story = await rolled_back(store)
    message = await compose(store, settings, story.watch.id, "rollback_executed")
    url = f"https://watchdog.acme.example/api/watches/{story.watch.id}"
    assert f"<{url}|Watch" in shown(message)
    assert message.data["url"] == url


async def test_a_rollback_in_progress(store: SqlStore, settings: Settings) -> None:
    story = await Story(store).open()
    await story.decided(await story.error_rates(0.002, 0.023, 0.025))
    await story.act(took=None)
    message = await compose(store, settings, story.watch.id, "rollback_started")
    assert shown(message).splitlines()[:5] == [
        "🔄 ROLLBACK IN PROGRESS",
        "*Deployment:* `dep-2` on *backend*, release `rel-2f9c` → rolling back to `dep-1` via "
        "render",
        f"*Reason:* {REASON}",
        "*Rollback time:* started 12:00:45 UTC, 5 min allowed",
        "*Status:* ⚠️ In progress",
    ]
    assert message.text.startswith(f"🔄 Rolling back backend dep-2 to dep-1: {REASON}.")


async def failed_rollback(store: SqlStore) -> Story:
    story = await Story(store).open()
    await story.decided(await story.error_rates(0.002, 0.023, 0.025))
    error = "render: HTTP 503 from the Render API: Service Unavailable"
    await story.act(took=timedelta(minutes=1, seconds=3), status=ActionStatus.FAILED, error=error)
    await story.close(Outcome.ROLLBACK_FAILED, explanation=error)
    return story


async def test_a_failed_rollback_says_why_and_how_to_roll_back_by_hand(
    store: SqlStore, settings: Settings
) -> None:
    story = await failed_rollback(store)
    message = await compose(store, settings, story.watch.id, "rollback_failed")
    text = shown(message)
    assert text.splitlines()[0] == "❌ ROLLBACK FAILED"
    assert "*Rollback time:* failed after 1 min 3 s (5 min allowed)" in text
    assert "*Error:* render: HTTP 503 from the Render API: Service Unavailable" in text
    assert "*Status:* ❌ Failed" in text
    assert "1. Roll back by hand now: `watchdog rollback backend --to dep-1`" in text
    assert f"`watchdog ack {story.watch.id}`" in text
    assert message.data["error"] == "render: HTTP 503 from the Render API: Service Unavailable"


async def test_a_failed_verification_lists_what_still_fails(
    store: SqlStore, settings: Settings
) -> None:
    checks = (
        ("health api", True, ""),
        ("flow auth", False, "POST /api/auth/login: expected 200, got 500"),
        ("database connectivity", True, ""),
        (
            "error rate",
            False,
            "error rate 2.1 % over 5,400 requests, not below 0.1 % within 5 minutes",
        ),
    )
    story = await rolled_back(store, verification=checks)
    message = await compose(store, settings, story.watch.id, "verification_failed")
    text = shown(message)
    assert text.splitlines()[0] == "⚠️ ROLLBACK VERIFICATION FAILED"
    assert "*Status:* ✅ Rolled back · ❌ 2 of 4 checks failed" in text
    assert "• *Backend:* ❌ flow auth: POST /api/auth/login: expected 200, got 500" in text
    assert "• *Database:* ✅ Healthy" in text
    assert (
        "• *Error rate:* ❌ error rate 2.1 % over 5,400 requests, not below 0.1 % within "
        "5 minutes" in text
    )
    assert "`watchdog verify backend`" in text
    assert message.data["failed_checks"] == ["flow auth", "error rate"]


async def test_a_full_system_rollback_shows_frontend_backend_database_and_error_rate(
    store: SqlStore, settings: Settings
) -> None:
    story = await Story(store).open()
    decision = await story.tick(1, [("migration_failed", 1, {}, None)])
    assert decision.rule == "migration-failed"
    await story.decided(decision)
    await story.close(
        Outcome.ROLLED_BACK,
        verification=(
            ("frontend: health home", True, ""),
            ("backend: health api", True, ""),
            ("database: database connectivity", True, ""),
            ("database: integrity", True, ""),
            ("frontend: error rate", True, "error rate 0.02 % over 1,200 requests < 0.1 %"),
            ("backend: error rate", True, "error rate 0.05 % over 5,400 requests < 0.1 %"),
        ),
    )
    message = await compose(store, settings, story.watch.id, "rollback_executed")
    text = shown(message)
    assert "(full system: applications, then the database)" in text
    assert [line for line in text.splitlines() if line.startswith("• ")] == [
        "• *Frontend:* ✅ Healthy",
        "• *Backend:* ✅ Healthy",
        "• *Database:* ✅ Healthy",
        "• *Error rate:* ✅ frontend: 0.02 % over 1,200 requests < 0.1 %; backend: 0.05 % over "
        "5,400 requests < 0.1 % (normal)",
    ]
    assert message.data["target_seconds"] == 20 * 60


async def test_consider_rollback_shows_what_was_observed_against_the_threshold(
    store: SqlStore, settings: Settings
) -> None:
    story = await Story(store).open()
    decision = await story.error_rates(0.002, 0.007, 0.007)
    assert decision.verdict is Verdict.MONITOR
    message = await compose(store, settings, story.watch.id, "consider_rollback")
    text = shown(message)
    assert text.splitlines()[:6] == [
        "🟡 CONSIDER ROLLBACK",
        "*Deployment:* `dep-2` on *backend*, release `rel-2f9c`",
        "*Observed:* error_rate 0.7 % over 5,400 requests between 0.5 % and 1 % → monitor",
        "*Evidence:*",
        "• `error_rate` 0.7 % over 5,400 requests at 12:00:45 UTC",
        "*Status:* 🟡 Monitoring closely",
    ]
    assert f"`POST {link(story.watch.id)}/hold`" in text
    assert "rule `error-rate-elevated`" in text.splitlines()[-1]
    assert message.data["decision"]["evidence"][0]["value"] == 0.007


async def test_consider_rollback_says_until_when_it_monitors(
    store: SqlStore, settings: Settings
) -> None:
    story = await Story(store).open()
    latency = ("latency_change", 0.6, {"check": "api", "percentile": "p95"}, 5)
    for n in (1, 2):
        decision = await story.tick(n, [("error_rate", 0.0005, {}, 5400), latency])
    assert decision.rule == "latency-degraded"
    message = await compose(store, settings, story.watch.id, "consider_rollback")
    assert "*Status:* 🟡 Monitoring closely until 12:15:15 UTC" in shown(message)
    assert "`latency_change{check=api,percentile=p95}` +60 %" in shown(message)


async def test_a_blind_watch_names_the_sources_that_failed(
    store: SqlStore, settings: Settings
) -> None:
    story = await Story(store).open()
    timeout = ProbeError("sentry", Failure.TIMEOUT, "no answer within 10s", metric="error_rate")
    for n in (1, 2, 3):
        decision = await story.tick(n, [("health", 1, {"check": "api"}, None)], [timeout])
    assert decision.verdict is Verdict.INCONCLUSIVE
    await story.close(Outcome.INCONCLUSIVE, explanation=decision.explanation)
    message = await compose(store, settings, story.watch.id, "watchdog_blind")
    text = shown(message)
    assert text.splitlines()[0] == "🙈 WATCHDOG BLIND (inconclusive)"
    assert f"*Why:* {decision.explanation}" in text
    assert (
        "• `sentry` (error_rate): timeout, 3 ticks from 12:00:15 UTC to 12:00:45 UTC; last: "
        "no answer within 10s" in text
    )
    assert "*Status:* ⚪ Inconclusive: no automatic rollback on what it cannot see" in text
    assert "`watchdog probe backend`" in text
    assert message.data["failing_sources"] == ["sentry"]


async def test_a_dry_run_says_what_it_would_have_done(store: SqlStore, settings: Settings) -> None:
    story = await Story(store).open(dry_run=True)
    await story.decided(await story.error_rates(0.002, 0.023, 0.025))
    await story.close(Outcome.WOULD_ROLL_BACK)
    message = await compose(store, settings, story.watch.id, "would_roll_back")
    text = shown(message)
    assert text.splitlines()[:5] == [
        "🧪 WOULD ROLL BACK (dry run)",
        "*Deployment:* `dep-2` on *backend*, release `rel-2f9c` → would roll back to `dep-1`",
        f"*Reason:* {REASON}",
        "*Rollback time:* 5 min allowed",
        "*Status:* 🧪 Dry run: nothing was changed",
    ]
    assert "`watchdog rollback backend --to dep-1`" in text
    assert message.data["dry_run"] is True


async def test_a_disabled_flag_names_it_and_how_to_turn_it_back_on(
    store: SqlStore, settings: Settings
) -> None:
    story = await Story(store).open()
    for n, rate in enumerate((0.0, 0.03, 0.04), 1):
        flag = ("flag_error_rate", rate, {"flag": "new_checkout"}, 5400)
        decision = await story.tick(n, [("error_rate", 0.002, {}, 5400), flag])
    assert decision.verdict is Verdict.DISABLE_FLAG
    await story.save(decided_at=decision.at, rule=decision.rule, explanation=decision.explanation)
    await story.act(
        kind="disable_flag",
        provider="sql",
        to="new_checkout",
        took=timedelta(milliseconds=400),
        notes=["enabled_globally=false, rollout_percentage=0"],
    )
    message = await compose(store, settings, story.watch.id, "flag_disabled")
    text = shown(message)
    assert text.splitlines()[:5] == [
        "🚩 FEATURE FLAG DISABLED",
        "*Flag:* `new_checkout` turned off via sql in 0.4 s (enabled_globally=false, "
        "rollout_percentage=0)",
        "*Deployment:* `dep-2` on *backend*, release `rel-2f9c`",
        "*Reason:* flag_error_rate{flag=new_checkout} 4 % over 5,400 requests > 1 % (95 % lower "
        "bound 3.51 %) for 2 readings → disable flag new_checkout",
        "*Status:* ✅ Disabled",
    ]
    assert "`watchdog flags enable new_checkout`" in text
    assert message.data["flag"] == "new_checkout"


async def test_an_escalation_mentions_the_level_and_says_how_to_acknowledge(
    store: SqlStore, settings: Settings
) -> None:
    story = await failed_rollback(store)
    level = settings.escalation[1]
    message = await compose(store, settings, story.watch.id, "escalation", level=level)
    section = message.blocks[1]["text"]["text"]
    assert section.startswith("<@U0LEAD> *team-lead*: this needs a person")  # a live mention
    text = shown(message)
    assert text.splitlines()[0] == "🚨 ESCALATION: team-lead"
    assert (
        "*Incident:* backend dep-2: the automatic rollback failed: render: HTTP 503 from the "
        "Render API: Service Unavailable" in text
    )
    assert "*Since:* 12:00:45 UTC" in text
    ack = f"`watchdog ack {story.watch.id}` / `POST {link(story.watch.id)}/ack`"
    assert f"*Acknowledge with:* {ack}" in text
    assert message.text.startswith("<@U0LEAD> 🚨 Escalation to team-lead: backend dep-2")
    assert f"watchdog ack {story.watch.id}" in message.text
    assert (message.data["level"], message.data["mention"]) == ("team-lead", "<@U0LEAD>")


async def every_kind_of_watch(store: SqlStore) -> list[Story]:
    stories = [await rolled_back(store), await failed_rollback(store)]
    watching = await Story(store).open()
    await watching.error_rates(0.002, 0.007)
    return [*stories, watching]


async def test_every_message_about_every_watch_is_accepted_by_slack_and_holds_no_secret(
    store: SqlStore,
    settings: Settings,
    slack_url: str,
    client: httpx.AsyncClient,
    channel: slack.SlackChannel,
) -> None:
    hook = SlackNotifier(Secret(slack_url + HOOK), client)
    sent = 0
    for story in await every_kind_of_watch(store):
        for kind in KINDS:
            level = settings.escalation[0] if kind == "escalation" else None
            message = await compose(store, settings, story.watch.id, kind, level=level)
            assert message.kind == kind
            everything = json.dumps(asdict(message), ensure_ascii=False)
            for name, secret in SECRETS.items():
                assert secret not in everything, f"{name} leaked into {kind}"
            assert "hooksecret" not in everything
            await hook.send(message)
            sent += 1
    assert len(channel.messages()) == sent == 3 * len(KINDS)


async def test_long_texts_are_clipped_to_slacks_limits_and_still_accepted(
    store: SqlStore,
    settings: Settings,
    slack_url: str,
    client: httpx.AsyncClient,
    channel: slack.SlackChannel,
) -> None:
    many = tuple(
        (f"flow step{n}", False, f"GET /api/items?page={n}&size=50: expected <200>, got 500")
        for n in range(200)
    )
    story = await rolled_back(store, verification=many)
    long_level = EscalationStep(name="on-call " * 40, after=timedelta(0), mention="<@U0ONCALL>")
    messages = [
        await compose(store, settings, story.watch.id, "verification_failed"),
        await compose(store, settings, story.watch.id, "escalation", level=long_level),
    ]
    for message in messages:
        assert len(message.blocks[0]["text"]["text"]) <= 150
        for block in message.blocks[1:]:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
        await SlackNotifier(Secret(slack_url + HOOK), client).send(message)
    verification = messages[0].blocks[3]["text"]["text"]
    assert verification.endswith("…")
    assert not re.search(r"&[a-z]*…$", verification)  # no entity cut in half
    assert len(channel.messages()) == 2


@pytest.mark.parametrize(
    ("text", "limit", "clipped"),
    [
        ("short", 10, "short"),
        ("a &gt; b", 5, "a …"),
        ("see <http://x.example/a|the watch>", 20, "see …"),
        ("line one\nline two is long", 14, "line one…"),
    ],
)
def test_clip_never_cuts_an_entity_or_a_link(text: str, limit: int, clipped: str) -> None:
    assert clip(text, limit) == clipped


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.4, "0.4 s"), (41.2, "41 s"), (252, "4 min 12 s"), (300, "5 min"), (1200, "20 min")],
)
def test_span(seconds: float, said: str) -> None:
    assert span(seconds) == said


def test_rollback_time_of_an_unfinished_action() -> None:
    action = ActionRecord(
        id="a",
        key="k",
        watch_id="w",
        target="database",
        deployment_id="20260128",
        kind="rollback",
        provider="sql-migrations",
        to="20260101",
        status=ActionStatus.INTENDED,
        started_at=T0,
    )
    assert rollback_time(action, 900) == "started 12:00:00 UTC, 15 min allowed"


def test_verification_lines_group_by_part_and_name_what_failed() -> None:
    assert verification_lines(
        [
            ("health api", False, "HTTP 502"),
            ("flows", False, ""),
            ("database connectivity", True, ""),
            ("integrity", False, "contacts 1,000 → 900 (-10 %)"),
        ],
        "backend",
    ) == [
        "• *Backend:* ❌ health api: HTTP 502; flows: failed",
        "• *Database:* ❌ integrity: contacts 1,000 → 900 (-10 %)",
    ]


async def test_composing_needs_a_known_kind_a_level_for_escalations_and_a_stored_watch(
    store: SqlStore, settings: Settings
) -> None:
    story = await rolled_back(store)
    with pytest.raises(ValueError, match="expected a message kind among rollback_started"):
        await compose(store, settings, story.watch.id, "rolled_back")
    with pytest.raises(ValueError, match="needs the level"):
        await compose(store, settings, story.watch.id, "escalation")
    with pytest.raises(NotifyError, match="no watch 'nope'"):
        await compose(store, settings, "nope", "rollback_executed")
