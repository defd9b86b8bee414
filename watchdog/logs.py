"""Logging: structlog events on stderr (JSON off a TTY, readable on one), secrets redacted.

stdout belongs to the command's output (``--json`` readings, summaries), so logs never go
there. Every configured secret value is masked in every event, whatever field it ended up in.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import BaseModel

from watchdog.secrets import Secret

MASK = "**********"


class Redactor:
    """A structlog processor that replaces known secret values in any string of an event."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, values: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._values = sorted(
            {*self._values, *(v for v in values if len(v) >= 4)}, key=len, reverse=True
        )

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self._values:
            for key, value in event.items():
                if isinstance(value, str):
                    event[key] = self.mask(value)
        return event

    def mask(self, text: str) -> str:
        for secret in self._values:
            text = text.replace(secret, MASK)
        return text


REDACTOR = Redactor()


def secrets_of(model: BaseModel) -> list[str]:
    """Every set secret value in a config model, however deeply nested."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, Secret):
            if value.is_set:
                found.append(value.reveal())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(model)
    return found


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Our events, and the warnings of the libraries' standard logging (APScheduler, uvicorn,
    httpx), as one stream of the same format, redacted alike."""
    out = stream or sys.stderr
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if out.isatty() else structlog.processors.JSONRenderer()
    )
    stamp: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *stamp,
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamp],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                REDACTOR,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)  # the libraries' info lines are noise here
    # "skipped: maximum number of running instances" every interval of a long rollback tick:
    # by design (one tick of a watch at a time), and tick lag is a metric.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
