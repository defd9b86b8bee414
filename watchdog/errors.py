"""The one exception tree of rollback-watchdog.

    WatchdogError
    ├── ConfigError      bad configuration, rules or input file; the CLI exits 2
    ├── SignalError      a signal source could not be read (recorded, never raised out of a tick)
    ├── RollbackError    a provider could not roll back (carries .provider and .deployment_id)
    ├── NotifyError      a notifier could not deliver
    └── StoreError       the state store failed

Outside errors (httpx, psycopg, yaml, pydantic) are translated into these at the module that
talks to them, with ``raise ... from exc``. Code branches on these types, never on message text.
"""

from __future__ import annotations


class WatchdogError(Exception):
    """Root of every error rollback-watchdog raises on purpose."""


class ConfigError(WatchdogError):
    """Configuration, rules or an input file is wrong.

    ``str(err)`` is one line per problem, each naming the file, the key path, what was
    expected and what was found, ready to print as it is.
    """

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SignalError(WatchdogError):
    """A signal source could not produce a reading."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


class RollbackError(WatchdogError):
    """A rollback provider failed to roll a deployment back.

    ``reached`` is False only when the request provably never reached the provider (the
    connection was refused before anything was sent), the one case where resending is safe.
    ``answered`` is False when it may have arrived but no answer came (a timeout): the change
    may still be happening, so the caller watches for it rather than calling it failed.
    """

    def __init__(
        self,
        provider: str,
        deployment_id: str | None,
        message: str,
        *,
        reached: bool = True,
        answered: bool = True,
    ) -> None:
        self.provider = provider
        self.deployment_id = deployment_id
        self.reached = reached
        self.answered = answered
        super().__init__(f"{provider}: {message}")


class NotifyError(WatchdogError):
    """A notifier could not deliver a message."""


class StoreError(WatchdogError):
    """The state store could not read or write."""
