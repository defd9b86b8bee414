"""The daemon's own health in Sentry (sentry-sdk): its unexpected errors as events, and a cron
monitor per discovery job, so someone hears about it when the watchdog itself stops working.

Off unless ``WATCHDOG_SENTRY_DSN`` is set. What leaves the process is kept small on purpose:
no local variables (frames in the store and provider modules hold DSNs and tokens); no PII
(the SDK's default: newer SDKs deprecate ``send_default_pii`` and warn when it is passed); no
default or auto-enabled integrations (httpx and http.client breadcrumbs would carry webhook
URLs); stdlib logging only as events at ERROR (how APScheduler and uvicorn report a job or
request that raised), never as breadcrumbs. Our own structlog events never reach Sentry. Every
configured secret is masked in whatever is sent, as in the logs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.atexit import AtexitIntegration
from sentry_sdk.integrations.dedupe import DedupeIntegration
from sentry_sdk.integrations.excepthook import ExcepthookIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.utils import BadDsn

from watchdog import logs
from watchdog.errors import ConfigError
from watchdog.settings import Settings

DSN_VARIABLE = "WATCHDOG_SENTRY_DSN"
ENVIRONMENT_VARIABLE = "WATCHDOG_SENTRY_ENVIRONMENT"


def init_from_env(settings: Settings) -> bool:
    """Start reporting to the Sentry project ``WATCHDOG_SENTRY_DSN`` names; False when it is
    unset. Raises ConfigError when the DSN is malformed."""
    dsn = os.environ.get(DSN_VARIABLE, "")
    if not dsn:
        return False
    logs.REDACTOR.add([dsn, *logs.secrets_of(settings)])
    try:
        sentry_sdk.init(
            dsn=dsn,
            release=f"rollback-watchdog@{version('rollback-watchdog')}",
            environment=os.environ.get(ENVIRONMENT_VARIABLE) or "production",
            include_local_variables=False,
            default_integrations=False,
            integrations=[
                LoggingIntegration(level=None, event_level=logging.ERROR, sentry_logs_level=None),
                ExcepthookIntegration(),
                AtexitIntegration(),
                DedupeIntegration(),
            ],
            before_send=_scrubbed,
        )
    except BadDsn as exc:
        raise ConfigError(
            f"{DSN_VARIABLE}: expected a Sentry DSN (https://KEY@HOST/PROJECT_ID): {exc}"
        ) from None
    return True


def capture(exc: BaseException) -> None:
    """Report an error the daemon did not expect (nothing happens when reporting is off)."""
    sentry_sdk.capture_exception(exc)


@asynccontextmanager
async def checkin(slug: str, every: timedelta) -> AsyncIterator[None]:
    """Check in to the cron monitor ``slug`` around one run of a job scheduled ``every``:
    ``in_progress`` on entry, then ``ok``, or ``error`` when the body raised. Sentry's
    schedules count whole minutes, so a job every 30 s is a monitor expecting one a minute,
    late after one more interval, timed out after one interval of running."""
    minutes = max(1, math.ceil(every.total_seconds() / 60))
    with sentry_sdk.monitor(
        monitor_slug=slug,
        monitor_config={
            "schedule": {"type": "interval", "value": minutes, "unit": "minute"},
            "checkin_margin": minutes,
            "max_runtime": minutes,
        },
    ):
        yield


def _scrubbed(event: Any, hint: Any) -> Any:
    return _masked(event)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return logs.REDACTOR.mask(value)
    if isinstance(value, dict):
        return {_masked(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value
