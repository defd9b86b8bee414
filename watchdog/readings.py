"""The readings file (JSON Lines): ``evaluate``'s input and ``probe --json``'s output.

{"deployment": {"id": "dep-2", "deployed_at": "2026-01-28T12:00:00Z"}}   (optional, first)
{"at": "2026-01-28T12:03:15Z", "metric": "error_rate", "value": 0.012, "samples": 5400}
{"at": "2026-01-28T12:03:15Z", "metric": "flow", "value": 0, "labels": {"flow": "auth"}}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from watchdog.errors import ConfigError
from watchdog.model import Reading
from watchdog.rules.metrics import CATALOG

_READING_KEYS = {"at", "metric", "value", "labels", "samples"}


@dataclass(frozen=True)
class ReadingsFile:
    readings: list[Reading]
    deployment_id: str | None = None
    deployed_at: datetime | None = None


def parse_time(text: Any) -> datetime:
    """An ISO 8601 time that names its zone; raise ValueError saying what was expected."""
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO 8601 time with zone, found {text!r}")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time with zone, found {text!r}") from None
    if value.tzinfo is None:
        raise ValueError(f"expected an ISO 8601 time with zone (Z or +00:00), found {text!r}")
    return value


def load_readings(path: Path) -> ReadingsFile:
    """Read and check every line; the first bad line raises ConfigError naming line and key."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (expected readings as JSON Lines)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read readings: {exc}") from None
    readings: list[Reading] = []
    deployment: dict[str, Any] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where}: expected one JSON object per line, found invalid "
                f"JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a JSON object, found {type(item).__name__}")
        if "deployment" in item:
            if readings or deployment:
                raise ConfigError(
                    f"{where}: deployment: expected the deployment line first, and only once"
                )
            deployment = _deployment(item, where)
            continue
        readings.append(_reading(item, where))
    if not readings:
        raise ConfigError(f"{path}: expected at least one reading, found none")
    return ReadingsFile(readings, deployment.get("id"), deployment.get("deployed_at"))


def _deployment(item: dict[str, Any], where: str) -> dict[str, Any]:
    body = item["deployment"]
    if set(item) != {"deployment"} or not isinstance(body, dict):
        raise ConfigError(
            f'{where}: deployment: expected {{"deployment": {{"id": ..., '
            f'"deployed_at": ...}}}}, found {json.dumps(item)[:80]}'
        )
    out: dict[str, Any] = {}
    if "id" in body:
        out["id"] = str(body["id"])
    if "deployed_at" in body:
        try:
            out["deployed_at"] = parse_time(body["deployed_at"])
        except ValueError as exc:
            raise ConfigError(f"{where}: deployment.deployed_at: {exc}") from None
    return out


def _reading(item: dict[str, Any], where: str) -> Reading:
    unknown = set(item) - _READING_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: {sorted(unknown)[0]}: unknown key (expected "
            f"{', '.join(sorted(_READING_KEYS))})"
        )
    for key in ("at", "metric", "value"):
        if key not in item:
            raise ConfigError(f"{where}: {key}: required key is missing")
    try:
        at = parse_time(item["at"])
    except ValueError as exc:
        raise ConfigError(f"{where}: at: {exc}") from None
    metric = CATALOG.get(item["metric"]) if isinstance(item["metric"], str) else None
    if metric is None:
        raise ConfigError(
            f"{where}: metric: expected one of {', '.join(CATALOG)}, found {item['metric']!r}"
        )
    value = item["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: value: expected a number, found {value!r}")
    problem = metric.value_problem(value)
    if problem:
        raise ConfigError(f"{where}: value: {problem} for {metric.name}, found {value!r}")
    labels = item.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ConfigError(f"{where}: labels: expected an object of strings, found {labels!r}")
    samples = item.get("samples")
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or samples < 0
    ):
        raise ConfigError(f"{where}: samples: expected a whole number >= 0, found {samples!r}")
    return Reading(at=at, metric=metric.name, value=float(value), labels=labels, samples=samples)


def reading_to_json(reading: Reading) -> dict[str, Any]:
    """The readings-file form of a reading (``probe --json`` writes these)."""
    out: dict[str, Any] = {
        "at": reading.at.isoformat().replace("+00:00", "Z"),
        "metric": reading.metric,
        "value": reading.value,
    }
    if reading.labels:
        out["labels"] = dict(reading.labels)
    if reading.samples is not None:
        out["samples"] = reading.samples
    return out
