"""The ``watchdog`` command. Exit codes: 0 success or healthy, 1 the job ran and found trouble
(or an action failed), 2 bad usage or bad configuration (one line per problem on stderr)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from watchdog import configcheck, demo, logs, probe
from watchdog import evaluate as evaluate_cmd
from watchdog.actions import ActionRunner, Plan
from watchdog.clock import SystemClock
from watchdog.daemon import drill_trigger
from watchdog.drill import DrillReport, report_json, run_drill
from watchdog.durations import format_duration, parse_duration
from watchdog.errors import ConfigError, WatchdogError
from watchdog.followup import Followup
from watchdog.httpclient import new_client
from watchdog.model import Decision, Deployment
from watchdog.notify.registry import build_notifiers
from watchdog.providers.registry import build_flag_switch, build_provider
from watchdog.readings import parse_time
from watchdog.rollback import Outcome, manual_rollback
from watchdog.run import run
from watchdog.settings import (
    DEFAULT_CONFIG,
    LoadedConfig,
    SentryConfig,
    Settings,
    load_config,
    load_rules,
)
from watchdog.store import opened
from watchdog.store.records import ActionRecord, ActionStatus
from watchdog.summary import action_json, iso, verification_json, watch_summary
from watchdog.verify import Verification, verify
from watchdog.watch import Context, Watch, progress_line, target_context, watch_until_closed

EXIT_OK, EXIT_TROUBLE, EXIT_USAGE = 0, 1, 2


def _duration_arg(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("WATCHDOG_CONFIG") or DEFAULT_CONFIG)


def cmd_config_check(args: argparse.Namespace) -> int:
    config = load_config(_config_path(args))
    if config.settings.drills is not None:
        drill_trigger(config)  # the scheduler's own reading of the drill day
    if args.json:
        print(json.dumps(configcheck.report_json(config), indent=2))
    else:
        configcheck.write_text(config, sys.stdout, sys.stderr)
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.rules:
        rules = load_rules(Path(args.rules))
    else:
        path = _config_path(args)
        rules = load_config(path).rules if path.exists() else load_rules(Path("config/rules.yaml"))
    result = evaluate_cmd.evaluate(rules, Path(args.readings), args.deployed_at, args.interval)
    if args.json:
        evaluate_cmd.write_json(result, sys.stdout)
    else:
        evaluate_cmd.write_text(result, sys.stdout)
    return result.exit_code


def _lookback_start(settings: Settings, now: datetime) -> datetime:
    """A deploy time for a one-off look: far enough back that Sentry's whole lookback
    counts."""
    lookback = SentryConfig.model_fields["lookback"].default
    return now - (settings.sentry.lookback if settings.sentry else lookback)


def cmd_probe(args: argparse.Namespace) -> int:
    settings = _settings_for(args)
    clock = SystemClock()
    now = clock.now()
    deployment = Deployment(
        target=args.target,
        id=args.deployment or "(probe)",
        deployed_at=args.deployed_at or _lookback_start(settings, now),
        release=args.release,
        previous_release=args.previous_release,
        migration_version=args.migration_version,
    )
    result = asyncio.run(probe.probe(settings, deployment, now, clock))
    if args.json:
        probe.write_json(result, sys.stdout, sys.stderr)
    else:
        probe.write_text(result, deployment, now, sys.stdout)
    return EXIT_TROUBLE if probe.failed(result) else EXIT_OK


def _settings_for(args: argparse.Namespace, *, all_targets: bool = False) -> Settings:
    return _config_for(args, all_targets=all_targets).settings


def _config_for(args: argparse.Namespace, *, all_targets: bool = False) -> LoadedConfig:
    """The config, with its secrets registered for redaction and ``args.target`` checked
    (``all`` is every target where ``all_targets``)."""
    loaded = load_config(_config_path(args))
    settings = loaded.settings
    logs.REDACTOR.add(logs.secrets_of(settings))
    target = getattr(args, "target", None)
    if (
        target is not None
        and target not in settings.targets
        and not (all_targets and target == "all")
    ):
        raise ConfigError(f"target {args.target!r}: expected one of {', '.join(settings.targets)}")
    return loaded


def _confirm_on_terminal(yes: bool) -> Callable[[Plan], bool]:
    def confirm(plan: Plan) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise ConfigError("refusing to roll back without --yes when not on a terminal")
        assert plan.to is not None
        answer = input(
            f"Roll {plan.target} back from {plan.deployment_id} to {plan.to.id}"
            f" ({plan.to.release or 'no release'})? [y/N] "
        )
        return answer.strip().lower() in ("y", "yes")

    return confirm


def cmd_rollback(args: argparse.Namespace) -> int:
    settings = _settings_for(args, all_targets=True)

    async def run() -> Outcome:
        async with opened(settings.state.url.reveal()) as store:
            return await manual_rollback(
                settings,
                args.target,
                store=store,
                clock=SystemClock(),
                to=args.to,
                reason=args.reason,
                dry_run=args.dry_run or settings.dry_run,
                confirm=_confirm_on_terminal(args.yes),
            )

    outcome = asyncio.run(run())
    _print_summary(outcome.summary, args.json)
    return EXIT_OK if outcome.ok else EXIT_TROUBLE


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['target']}: {summary['verdict']}: {summary.get('explanation', '')}")
    for action in summary["actions"]:
        seconds = action["seconds"]
        timing = (
            f" in {seconds:.1f}s (target {action['target_seconds']}s)"
            if seconds is not None
            else ""
        )
        print(
            f"  {action['kind']} via {action['provider']} to {action['to']}: "
            f"{action['status']}{timing}"
        )
        for line in [action.get("error"), *action.get("notes", [])]:
            if line:
                print(f"    {line}")
    verification = summary["verification"]
    if verification:
        print(f"  verification: {'passed' if verification['passed'] else 'FAILED'}")
        for check in verification["checks"]:
            print("    " + _check_line(check["name"], check["passed"], check.get("detail", "")))


def _check_line(name: str, passed: bool, detail: str) -> str:
    return f"{'ok ' if passed else 'BAD'} {name}" + (f": {detail}" if detail else "")


def cmd_verify(args: argparse.Namespace) -> int:
    settings = _settings_for(args)
    clock = SystemClock()

    async def run() -> Verification:
        timeout = settings.watch.probe_timeout.total_seconds()
        async with new_client(timeout=timeout) as client:
            live = await build_provider(
                settings.targets[args.target].provider, client, clock
            ).live()
        serving = Deployment(
            args.target, live.id, _lookback_start(settings, clock.now()), release=live.release
        )
        return await verify(settings, serving, clock)

    result = asyncio.run(run())
    if args.json:
        print(json.dumps(verification_json(result), indent=2))
    else:
        for check in result.checks:
            print(_check_line(check.name, check.passed, check.detail))
        print("verification " + ("passed" if result.passed else "FAILED"))
    return EXIT_OK if result.passed else EXIT_TROUBLE


def cmd_flags(args: argparse.Namespace) -> int:
    settings = _settings_for(args)
    if settings.flags is None:
        raise ConfigError(
            f"{_config_path(args)}: flags: expected a 'flags' section (kind: sql "
            "or api) to switch feature flags with"
        )
    flags = settings.flags
    enable = args.flags_verb == "enable"
    clock = SystemClock()

    async def run() -> ActionRecord:
        async with (
            opened(settings.state.url.reveal()) as store,
            new_client(timeout=settings.watch.probe_timeout.total_seconds()) as c,
        ):
            return await ActionRunner(store, clock).flag(
                build_flag_switch(flags, c),
                args.key,
                enable=enable,
                reason=args.reason,
                target=args.target or "flags",
                deployment_id=f"manual-{clock.now():%Y%m%dT%H%M%S.%fZ}",
                watch_id=None,
            )

    record = asyncio.run(run())
    if args.json:
        print(json.dumps(action_json(record, 60), indent=2))
    else:
        print(
            f"{record.kind} {args.key} via {record.provider}: {record.status}"
            + (f" in {record.seconds:.1f}s" if record.seconds is not None else "")
        )
        for line in [record.error, *record.notes]:
            if line:
                print(f"  {line}")
    return EXIT_OK if record.status is ActionStatus.DONE else EXIT_TROUBLE


def cmd_watch(args: argparse.Namespace) -> int:
    loaded = _config_for(args)
    settings = loaded.settings
    clock = SystemClock()
    window = args.window or settings.watch.window
    interval = args.interval or settings.watch.interval
    if not timedelta(0) < interval < window:
        raise ConfigError(
            f"--interval {format_duration(interval)} must be shorter than "
            f"--window {format_duration(window)}"
        )

    async def run() -> dict[str, Any]:
        async with (
            opened(settings.state.url.reveal()) as store,
            target_context(settings, loaded.rules, store, clock, args.target) as ctx,
            new_client(timeout=10) as client,
        ):
            followup = Followup(loaded, store, clock, build_notifiers(settings, client))
            ctx.notify = followup.notify
            deployment = await _deployment_to_watch(args, ctx, clock)
            watch = await Watch.start(
                ctx,
                deployment,
                window=window,
                interval=interval,
                dry_run=args.dry_run or settings.dry_run,
            )

            def show(decision: Decision) -> None:
                if not args.json:
                    print(progress_line(decision, watch.record.closes_at), flush=True)

            await watch_until_closed(watch, clock, asyncio.sleep, show)
            # Tell people and write the post-mortem now; only the daemon escalates later.
            await followup.run()
            record = await store.watch(watch.record.id)
            return await watch_summary(store, settings, record or watch.record)

    summary = asyncio.run(run())
    _print_summary(summary, args.json)
    return EXIT_OK if summary["verdict"] == "healthy" else EXIT_TROUBLE


async def _deployment_to_watch(
    args: argparse.Namespace, ctx: Context, clock: SystemClock
) -> Deployment:
    """The deployment named on the command line, completed from the provider: by default
    the one live now, deployed now, with its release and the known-good one before it."""
    live = await ctx.provider.live()
    deployment_id = args.deployment or live.id
    good = await ctx.provider.known_good(live) if deployment_id == live.id else None
    return Deployment(
        target=args.target,
        id=deployment_id,
        deployed_at=args.deployed_at or clock.now(),
        previous_id=args.previous or (good.id if good else None),
        release=args.release or (live.release if deployment_id == live.id else None),
        previous_release=good.release if good else None,
        migration_version=args.migration_version,
    )


def cmd_run(args: argparse.Namespace) -> int:
    asyncio.run(run(_config_for(args), _config_path(args)))
    return EXIT_OK


def _ask_daemon(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One call to the running daemon at ``url`` (``--api``); a refused or broken connection
    is a WatchdogError, an error status the caller's to read."""
    try:
        return httpx.request(method, f"{url.rstrip('/')}{path}", **kwargs)
    except httpx.HTTPError as exc:
        raise WatchdogError(f"--api {url}: the daemon did not answer: {exc}") from exc


def _watches_from_api(url: str, limit: int) -> list[dict[str, Any]]:
    """What a running daemon says (GET /api/watches): the store as the daemon sees it, with
    no need for the store's credentials here."""
    response = _ask_daemon(url, "GET", "/api/watches", params={"limit": limit})
    if response.is_error:
        raise WatchdogError(f"--api {url}: {response.status_code} {response.text}")
    watches: list[dict[str, Any]] = response.json()
    return watches


def cmd_status(args: argparse.Namespace) -> int:
    async def read() -> list[dict[str, Any]]:
        settings = _settings_for(args)
        async with opened(settings.state.url.reveal()) as store:
            return [
                {"id": record.id, **await watch_summary(store, settings, record)}
                for record in await store.recent_watches(args.limit)
            ]

    watches = _watches_from_api(args.api, args.limit) if args.api else asyncio.run(read())
    if args.json:
        print(json.dumps(watches, indent=2))
        return EXIT_OK
    if not watches:
        print("no watches yet")
    for w in watches:
        print(
            f"{w['started_at']}  {w['target']:<16} {w['deployment_id']:<14} "
            f"{w['verdict']:<16} {w['rule'] or ''}"
        )
    return EXIT_OK


def cmd_drill(args: argparse.Namespace) -> int:
    loaded = _config_for(args)
    settings = loaded.settings

    def say(line: str) -> None:
        print(line, flush=True)

    async def run() -> DrillReport:
        async with (
            opened(settings.state.url.reveal()) as store,
            new_client(timeout=settings.watch.probe_timeout.total_seconds()) as client,
        ):
            return await run_drill(
                loaded,
                store,
                SystemClock(),
                target=args.target,
                notifiers=build_notifiers(settings, client),
                progress=None if args.json else say,
            )

    report = asyncio.run(run())
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(f"drill {'PASSED' if report.passed else 'FAILED'}: {report.headline()}")
        for line in report.undelivered:
            print(f"  not delivered: {line}")
        print(f"report: {report.path}")
    return EXIT_OK if report.passed else EXIT_TROUBLE


def cmd_ack(args: argparse.Namespace) -> int:
    settings = _settings_for(args)
    if args.api:
        token = settings.api.token
        if token is None:
            raise ConfigError("api.token: expected a token to acknowledge through --api")
        response = _ask_daemon(
            args.api,
            "POST",
            f"/api/watches/{args.watch_id}/ack",
            headers={"Authorization": f"Bearer {token.reveal()}"},
        )
        if response.status_code == 404:
            raise WatchdogError(f"no watch {args.watch_id}")
        if response.is_error:
            raise WatchdogError(f"--api {args.api}: {response.status_code} {response.text}")
        acknowledged_at = response.json()["acknowledged_at"]
    else:

        async def ack() -> str | None:
            async with opened(settings.state.url.reveal()) as store:
                record = await store.acknowledge_watch(args.watch_id, SystemClock().now())
            if record is None:
                raise WatchdogError(f"no watch {args.watch_id}")
            return iso(record.acknowledged_at)

        acknowledged_at = asyncio.run(ack())
    print(f"{args.watch_id}: acknowledged at {acknowledged_at}; escalation stopped")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    result = demo.run(demo.workspace(args.keep), sys.stdout, as_json=args.json)
    return EXIT_OK if result.ok else EXIT_TROUBLE


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help=f"config file (default: $WATCHDOG_CONFIG, else {DEFAULT_CONFIG})",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    parser = argparse.ArgumentParser(
        prog="watchdog",
        description="Watches each deploy for its first minutes and rolls it back when the "
        "runbook's rules say so.",
        epilog="exit codes: 0 healthy/success, 1 trouble found or an action failed, "
        "2 bad usage or configuration",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    config = verbs.add_parser("config", help="configuration commands")
    config_verbs = config.add_subparsers(dest="config_verb", required=True, metavar="ACTION")
    check = config_verbs.add_parser(
        "check",
        parents=[common],
        help="validate the config and its rules, print the effective thresholds (exit 0 or 2)",
    )
    check.set_defaults(func=cmd_config_check)

    ev = verbs.add_parser(
        "evaluate",
        parents=[common],
        help="replay recorded readings through the rules and print each decision",
        description="Replay a readings file (JSON Lines) through the rule engine. Exit 0 when "
        "the final verdict is none (healthy), 1 otherwise, 2 on bad input.",
    )
    ev.add_argument("--readings", required=True, metavar="FILE", help="readings, JSON Lines")
    ev.add_argument(
        "--rules", metavar="FILE", help="rules file (default: the config's, else config/rules.yaml)"
    )
    ev.add_argument(
        "--deployed-at",
        type=_time_arg,
        metavar="ISO",
        help="deploy time (default: the file's deployment line, else the first reading)",
    )
    ev.add_argument(
        "--interval",
        type=_duration_arg,
        metavar="D",
        help="tick interval of the recording (default: inferred from the readings, else 15s)",
    )
    ev.set_defaults(func=cmd_evaluate)

    pr = verbs.add_parser(
        "probe",
        parents=[common],
        help="read every signal of a target once",
        description="Read every signal of TARGET once and print the readings and each probe "
        "error. With --json the readings go to stdout as a readings file (the "
        "input of evaluate) and errors to stderr, one JSON object a line. Exit 1 "
        "when a source failed (an answer with nothing to measure yet is not a "
        "failure).",
    )
    pr.add_argument("target", metavar="TARGET")
    pr.add_argument(
        "--release",
        help="Sentry release of the live deployment (default: none; "
        "Sentry signals then report that they need one)",
    )
    pr.add_argument("--previous-release", help="release to compare Sentry latency with")
    pr.add_argument("--deployment", metavar="ID", help="deployment id, for the record")
    pr.add_argument(
        "--deployed-at",
        type=_time_arg,
        metavar="ISO",
        help="deploy time (default: now minus the Sentry lookback)",
    )
    pr.add_argument(
        "--migration-version",
        metavar="V",
        help="migration the deployment applied, checked in the migrations table",
    )
    pr.set_defaults(func=cmd_probe)

    rn = verbs.add_parser(
        "run",
        parents=[common],
        help="the daemon: scheduler and HTTP API",
        description="Run the daemon: watch every announced or discovered deploy, serve the "
        "HTTP API on api.listen. SIGTERM finishes the ticks in flight and exits; SIGHUP "
        "reloads the config (a bad one is logged and the running one kept).",
    )
    rn.set_defaults(func=cmd_run)

    st = verbs.add_parser(
        "status",
        parents=[common],
        help="recent watches and how they ended",
        description="The most recent watches from the state store, or from a running "
        "daemon with --api: target, deployment, verdict (or state while open) and the rule "
        "that decided.",
    )
    st.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    st.add_argument(
        "--api",
        metavar="URL",
        help="ask the daemon serving this URL (e.g. http://127.0.0.1:8080) instead of the store",
    )
    st.set_defaults(func=cmd_status)

    ak = verbs.add_parser(
        "ack",
        parents=[common],
        help="acknowledge a watch's incident: stops its escalation",
        description="Acknowledge WATCH_ID: people have it, so the escalation chain stops. "
        "Through the state store, or with --api through a running daemon (using api.token). "
        "Acknowledging again keeps the first time.",
    )
    ak.add_argument("watch_id", metavar="WATCH_ID", help="the watch's id (see `status`)")
    ak.add_argument("--api", metavar="URL", help="the daemon to ask, e.g. http://127.0.0.1:8080")
    ak.set_defaults(func=cmd_ack)

    wa = verbs.add_parser(
        "watch",
        parents=[common],
        help="watch one deployment in the foreground",
        description="Watch one deployment of TARGET for --window, a tick every --interval, "
        "with a progress line per tick; act as the rules say (roll back, disable a flag), "
        "verify, and print the summary. By default the deployment is the one live now, "
        "deployed now. Exit 0 when it closes healthy, 1 otherwise.",
    )
    wa.add_argument("target", metavar="TARGET")
    wa.add_argument("--deployment", metavar="ID", help="default: the one live now")
    wa.add_argument("--previous", metavar="ID", help="known-good deployment to go back to")
    wa.add_argument("--deployed-at", type=_time_arg, metavar="ISO", help="default: now")
    wa.add_argument("--release", help="Sentry release (default: the live commit)")
    wa.add_argument("--migration-version", metavar="V", help="migration the deploy applied")
    wa.add_argument(
        "--window",
        type=_duration_arg,
        metavar="D",
        help="how long to watch (default: watch.window)",
    )
    wa.add_argument(
        "--interval",
        type=_duration_arg,
        metavar="D",
        help="time between ticks (default: watch.interval)",
    )
    wa.add_argument(
        "--dry-run",
        action="store_true",
        help="decide and report 'would roll back', but act on nothing",
    )
    wa.set_defaults(func=cmd_watch)

    rb = verbs.add_parser(
        "rollback",
        parents=[common],
        help="roll a target back by hand, verify, report",
        description="Roll TARGET back from the deployment live now to its last known-good one "
        "(or --to), wait until it serves, run the verification checklist and print "
        "the timed summary. TARGET 'all' is the full system rollback: the flags in "
        "full_rollback.flags off first, then every target in full_rollback.order, stopping at "
        "the first step that fails. Asks for confirmation on a terminal unless --yes. "
        "Exit 0 when rolled back and verified, 1 otherwise.",
    )
    rb.add_argument("target", metavar="TARGET")
    rb.add_argument("--to", metavar="ID", help="deployment id or release to go back to")
    rb.add_argument("--reason", default="rolled back by hand", help="recorded with the action")
    rb.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be rolled back; record and send nothing",
    )
    rb.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rb.set_defaults(func=cmd_rollback)

    vf = verbs.add_parser(
        "verify",
        parents=[common],
        help="run the post-rollback verification checklist now",
        description="Check what TARGET serves now: health endpoints, critical flows, database "
        "connectivity, and the error rate below the threshold within the allowed "
        "time (verify: in the config). Exit 0 when every check passes, else 1.",
    )
    vf.add_argument("target", metavar="TARGET")
    vf.set_defaults(func=cmd_verify)

    dr = verbs.add_parser(
        "drill",
        parents=[common],
        help="a rollback drill on a staging target, timed against the runbook",
        description="The runbook's monthly rollback drill on TARGET (staging, never "
        "production): make drills.bad_deployment live, watch it (watch.window, a tick every "
        "watch.interval) until the watchdog detects it and rolls back on its own, time each "
        "phase against the 5-minute target, run the verification checklist, write the report "
        "to drills.reports and post it to the configured notifiers. When the watchdog does not "
        "roll back, the drill puts the known-good deployment back itself. Exit 0 when the "
        "drill passed, 1 when it failed.",
    )
    dr.add_argument("target", metavar="TARGET", nargs="?", help="default: drills.target")
    dr.set_defaults(func=cmd_drill)

    de = verbs.add_parser(
        "demo",
        help="see a bad deploy caught, rolled back, verified and reported, on this machine",
        description="Start the sandbox (a toy app, Sentry, Render and Slack stand-ins) on "
        "loopback and the daemon with its API in this process, then play CI: deploy a good "
        "release, which is watched and closes healthy, then a bad one, which is detected, "
        "rolled back through Render, verified, told to Slack and written up with a chart. "
        "Needs no configuration, credentials or network beyond loopback; takes about half a "
        "minute. Exit 0 when everything happened as it should, 1 otherwise (saying what).",
    )
    de.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="write the state, config, log and incident report here (a new or empty "
        "directory; default: a new temporary directory)",
    )
    de.add_argument(
        "--json", action="store_true", help="print only a machine-readable summary at the end"
    )
    de.set_defaults(func=cmd_demo)

    fl = verbs.add_parser("flags", help="the feature-flag kill switch")
    fl_verbs = fl.add_subparsers(dest="flags_verb", required=True, metavar="ACTION")
    for name, text in (
        ("disable", "turn a flag off for everyone (enabled_globally false, rollout 0 %)"),
        (
            "enable",
            "turn a flag back on (to its values before the disable, where the switch knows them)",
        ),
    ):
        one = fl_verbs.add_parser(
            name,
            parents=[common],
            help=text,
            description=text + ". Recorded as an action; exit 0 when done, 1 when it failed.",
        )
        one.add_argument("key", metavar="KEY")
        one.add_argument("--target", help="the target the flag belongs to, for the record")
        one.add_argument("--reason", default=f"{name}d by hand", help="recorded with it")
        one.set_defaults(func=cmd_flags)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure()
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"watchdog: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except WatchdogError as exc:
        print(f"watchdog: {exc}", file=sys.stderr)
        return EXIT_TROUBLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
