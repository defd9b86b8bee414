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

from watchdog import configcheck, logs
from watchdog import evaluate as evaluate_cmd
from watchdog.clock import SystemClock
from watchdog.durations import parse_duration
from watchdog.errors import ConfigError
from watchdog.model import Deployment
from watchdog.readings import parse_time
from watchdog.settings import DEFAULT_CONFIG, load_config, load_rules

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


def cmd_probe(args: argparse.Namespace) -> int:
    from watchdog import probe  # the signal clients load only for verbs that need them

    settings = load_config(_config_path(args)).settings
    logs.REDACTOR.add(logs.secrets_of(settings))
    if args.target not in settings.targets:
        raise ConfigError(f"target {args.target!r}: expected one of {', '.join(settings.targets)}")
    clock = SystemClock()
    now = clock.now()
    lookback = settings.sentry.lookback if settings.sentry else timedelta(minutes=2)
    deployment = Deployment(
        target=args.target,
        id=args.deployment or "(probe)",
        deployed_at=args.deployed_at or now - lookback,
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
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
