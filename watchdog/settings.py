"""The configuration: YAML plus ``WATCHDOG_*`` environment overrides, typed and validated.

Load with ``load_config(path)``; it returns the settings, the rules they point to, and the
environment variables the files refer to that are unset (warnings until a value is needed).
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from watchdog import configfile
from watchdog.configfile import EnvRef, KeyPath
from watchdog.durations import format_duration
from watchdog.errors import ConfigError
from watchdog.rules.schema import Duration, RuleSet
from watchdog.schedule import cron_fields
from watchdog.secrets import Secret

DEFAULT_CONFIG = Path("config/watchdog.yaml")


def _api_url(*habits: str) -> Any:
    """An outside service's origin. A trailing path people add by habit (``/api/0/``) is
    tolerated and dropped, since the clients add the API's own paths."""

    def check(url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"expected an http(s) URL such as https://example.com, found {url!r}")
        url = url.rstrip("/")
        for habit in habits:
            if url.endswith(habit):
                return url.removesuffix(habit)
        return url

    return AfterValidator(check)


def _http_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"expected an http(s) URL, found {url!r}")
    return url


HttpUrl = Annotated[str, AfterValidator(_http_url)]
TABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
"""``table`` or ``schema.table``: what every configured table name must look like."""


class Model(BaseModel):
    """Every config section: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StateConfig(Model):
    url: Secret = Field(
        default=Secret("sqlite:///.watchdog/state.db"),
        description="sqlite:///relative/path or sqlite:////absolute/path (one replica), "
        "or postgresql://… (several replicas)",
    )


class ApiConfig(Model):
    listen: str = Field(
        default="127.0.0.1:8080",
        pattern=r"^[^\s:]+:\d{1,5}$",
        description="HOST:PORT the daemon's HTTP API binds to",
    )
    token: Secret | None = Field(default=None, description="bearer token for mutating calls")
    public_url: HttpUrl | None = Field(
        default=None,
        description="where people reach this API (behind a proxy, say), for links in "
        "notifications; default http://<listen>",
    )


class WebhooksConfig(Model):
    vercel_secret: Secret | None = None
    render_secret: Secret | None = None
    github_secret: Secret | None = None


class WatchConfig(Model):
    window: Duration = Field(default=timedelta(minutes=10), description="how long to watch")
    interval: Duration = Field(default=timedelta(seconds=15), description="time between ticks")
    discover: Duration | None = Field(
        default=timedelta(seconds=30),
        description="how often the daemon asks each target's provider for a new production "
        "deployment to watch; null: only deploys announced through the API are watched",
    )
    timeout: Duration | None = Field(
        default=None,
        description="limit on each probe of a tick; default two thirds of the interval, "
        "at most 10s",
    )

    @model_validator(mode="after")
    def _interval_fits(self) -> WatchConfig:
        if not timedelta(0) < self.interval < self.window:
            raise ValueError(
                "expected 0 < interval < window, found interval "
                f"{format_duration(self.interval)} and window {format_duration(self.window)}"
            )
        if self.timeout is not None and not timedelta(0) < self.timeout < self.interval:
            raise ValueError(
                f"expected 0 < timeout < interval, found timeout "
                f"{format_duration(self.timeout)} and interval {format_duration(self.interval)}"
            )
        return self

    @property
    def probe_timeout(self) -> timedelta:
        """Every probe of a tick ends before the next tick is due."""
        return self.timeout or min(timedelta(seconds=10), self.interval * 2 / 3)


class SentryConfig(Model):
    api_url: Annotated[str, _api_url("/api/0")] = "https://sentry.io"
    organization: str
    token: Secret
    lookback: Duration = Field(
        default=timedelta(minutes=2),
        description="trailing window of the error rate (never before the deploy)",
    )


class SlackConfig(Model):
    webhook_url: Secret


class WebhookNotify(Model):
    """A generic JSON webhook told of every notification: POST {"kind", "text", "data"}."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="names this webhook in logs and in the outbox (as webhook:NAME)",
    )
    url: Secret = Field(description="where to POST; a secret, as such URLs often hold a token")
    token: Secret | None = Field(default=None, description="sent as Authorization: Bearer …")


def _unique_names(webhooks: list[WebhookNotify]) -> list[WebhookNotify]:
    names = [w.name for w in webhooks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"expected each webhook's name once, found {', '.join(twice)} twice")
    return webhooks


class VerifyConfig(Model):
    """The runbook's verification checklist: "error rate should be <0.1% within 5 minutes"."""

    error_rate_below: float = Field(default=0.001, gt=0, lt=1)
    within: Duration = Field(default=timedelta(minutes=5))


class IncidentsConfig(Model):
    dir: Path = Path("incidents")


class _AppProvider(Model):
    live_timeout: Duration = Field(
        default=timedelta(minutes=5),
        description="how long a rollback may take to go live (runbook: application < 5 min)",
    )


class VercelProvider(_AppProvider):
    kind: Literal["vercel"]
    api_url: Annotated[str, _api_url()] = "https://api.vercel.com"
    project: str = Field(description="project id or name")
    team_id: str | None = None
    token: Secret
    method: Literal["rollback", "promote"] = Field(
        default="rollback",
        description="instant rollback (keeps auto-assignment paused) or promote the "
        "previous production deployment",
    )


class RenderProvider(_AppProvider):
    kind: Literal["render"]
    api_url: Annotated[str, _api_url("/v1")] = "https://api.render.com"
    service_id: str
    token: Secret
    disable_autodeploy: bool = Field(
        default=True,
        description="turn auto-deploy off after a rollback, so the next push does not "
        "undo it (turn it back on by hand once fixed)",
    )


class RailwayProvider(_AppProvider):
    kind: Literal["railway"]
    api_url: Annotated[str, _api_url("/graphql/v2")] = "https://backboard.railway.com"
    project_id: str
    environment_id: str
    service_id: str
    token: Secret
    token_kind: Literal["project", "account"] = Field(
        default="project", description="project tokens use Project-Access-Token, others Bearer"
    )


class GitProvider(_AppProvider):
    kind: Literal["git"]
    repository: str = Field(description="URL or path of the repository to push the revert to")
    branch: str = "main"
    workdir: Path = Field(
        default=Path(".watchdog/git"), description="where the working clone is kept"
    )
    token: Secret | None = Field(default=None, description="for pushing over https")
    author: str = "rollback-watchdog <rollback-watchdog@localhost>"
    allow_force_push: bool = Field(
        default=False,
        description="true: the runbook's reset + force-push method instead of a revert",
    )


class SqlMigrationsProvider(Model):
    kind: Literal["sql-migrations"]
    dsn: Secret
    rollback_dir: Path = Field(
        description="down scripts named <version>.sql or <version>_<name>.sql"
    )
    migrations_table: str = Field(
        default="schema_migrations",
        pattern=TABLE_NAME,
        description="schema_migrations, or supabase_migrations.schema_migrations",
    )
    lock_timeout: Duration = timedelta(seconds=5)
    statement_timeout: Duration = timedelta(minutes=2)
    backup_check: str | None = Field(
        default=None,
        description="a command that must exit 0 (a recent backup exists) before any SQL runs",
    )


Provider = Annotated[
    VercelProvider | RenderProvider | RailwayProvider | GitProvider | SqlMigrationsProvider,
    Field(discriminator="kind"),
]


class TargetSentry(Model):
    project: str
    environment: str = "production"
    flags: dict[str, str] = Field(
        default_factory=dict,
        description="feature flag key → Sentry search that finds its events "
        "(e.g. new_checkout: 'feature:new_checkout'), for flag_error_rate",
    )


class HealthCheck(Model):
    name: str
    url: HttpUrl
    expect_status: int = Field(default=200, ge=100, le=599)
    expect_json: dict[str, Any] | None = None


class LatencyProbe(Model):
    name: str
    url: HttpUrl
    samples: int = Field(default=5, ge=1, le=100)


class FlowStep(Model):
    """One request of a flow. ``{{name}}`` in url, headers or json is replaced by a value an
    earlier step captured; ``capture`` maps a name to a dotted path in this step's JSON answer
    (``{token: token}``, ``{id: data.items.0.id}``)."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: HttpUrl
    headers: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    expect_status: int = Field(default=200, ge=100, le=599)
    capture: dict[str, str] = Field(default_factory=dict)


class Flow(Model):
    name: str
    critical: bool = False
    steps: list[FlowStep] = Field(min_length=1)


class Integrity(Model):
    tables: list[str] = Field(min_length=1)
    tolerance: float = Field(
        default=0.02, ge=0, le=1, description="allowed relative change of each row count"
    )


class Database(Model):
    """The target's database, read (never written) by the database signal."""

    dsn: Secret
    migrations_table: str = Field(
        default="schema_migrations",
        pattern=TABLE_NAME,
        description="schema_migrations, or supabase_migrations.schema_migrations",
    )
    migration_grace: Duration = Field(
        default=timedelta(minutes=1),
        description="how long after the deploy an announced migration may still be missing",
    )


class Target(Model):
    provider: Provider
    sentry: TargetSentry | None = None
    health: list[HealthCheck] = Field(default_factory=list)
    latency: list[LatencyProbe] = Field(default_factory=list)
    flows: list[Flow] = Field(default_factory=list)
    database: Database | None = None
    integrity: Integrity | None = None


class SqlFlags(Model):
    kind: Literal["sql"]
    dsn: Secret
    table: str = Field(default="feature_flags", pattern=TABLE_NAME)
    audit_table: str = Field(
        default="feature_flag_audit_log",
        pattern=TABLE_NAME,
        description="written to when it exists",
    )


class ApiFlags(Model):
    kind: Literal["api"]
    api_url: Annotated[str, _api_url()] = Field(
        description="the app's API origin: PATCH /api/feature-flags/{key}, then "
        "POST /api/feature-flags/cache/clear"
    )
    token: Secret


Flags = Annotated[SqlFlags | ApiFlags, Field(discriminator="kind")]


class EscalationStep(Model):
    name: str
    after: Duration
    mention: str


class FullRollback(Model):
    """The runbook's full system rollback (scope ``full``, ``watchdog rollback all``)."""

    flags: list[str] = Field(
        default_factory=list, description="feature flags turned off first (needs 'flags')"
    )
    order: list[str] = Field(
        default_factory=list,
        description="targets in rollback order; default: the application targets as listed, "
        "then the sql-migrations targets, leaving out the drills target",
    )


def _drill_schedule(schedule: str) -> str:
    cron_fields(schedule)
    return schedule


class Drills(Model):
    """The runbook's monthly rollback drill (``watchdog drill``), on a staging target, never
    production: ``bad_deployment`` is made live there and the watchdog must roll it back on
    its own within the runbook's 5 minutes."""

    target: str = Field(description="the staging target drills run on")
    schedule: Annotated[str, AfterValidator(_drill_schedule)] = Field(
        default="last fri 15:00",
        description="when the daemon runs the drill, in UTC: '<day> HH:MM', the day written as "
        "a cron day field ('last fri', '1st mon', '15')",
    )
    bad_deployment: str | None = Field(
        default=None,
        description="id of a known-bad deployment of the target, made live for the drill "
        "(needed to run one)",
    )
    reports: Path = Field(
        default=Path("incidents/drills"),
        description="where drill reports are written: YYYY-MM-DD-drill-<target>.md",
    )


class Settings(BaseSettings):
    """The whole config file. Environment variables ``WATCHDOG_<KEY>`` (nested with ``__``,
    e.g. ``WATCHDOG_WATCH__INTERVAL=5s``) override the file."""

    model_config = SettingsConfigDict(
        env_prefix="WATCHDOG_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    state: StateConfig = Field(default_factory=StateConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    dry_run: bool = False
    watch: WatchConfig = Field(default_factory=WatchConfig)
    rules: Path = Path("config/rules.yaml")
    sentry: SentryConfig | None = None
    slack: SlackConfig | None = None
    notify_webhooks: Annotated[list[WebhookNotify], AfterValidator(_unique_names)] = Field(
        default_factory=list
    )
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    targets: dict[str, Target] = Field(min_length=1)
    flags: Flags | None = None
    full_rollback: FullRollback = Field(default_factory=FullRollback)
    escalation: list[EscalationStep] = Field(default_factory=list)
    drills: Drills | None = None

    def rollback_order(self) -> list[str]:
        """Targets in the order a full rollback takes them: applications before databases,
        never the drills' (staging) target unless listed."""
        if self.full_rollback.order:
            return list(self.full_rollback.order)
        drill = self.drills.target if self.drills else None
        names = [n for n in self.targets if n != drill]
        apps = [n for n in names if self.targets[n].provider.kind != "sql-migrations"]
        return apps + [n for n in names if n not in apps]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings

    def problems(self) -> list[tuple[KeyPath, str]]:
        """What is wrong between sections (a name that points nowhere), as (key, message)."""
        found: list[tuple[KeyPath, str]] = []
        if self.drills and self.drills.target not in self.targets:
            found.append(
                (
                    ("drills", "target"),
                    f"expected one of the targets "
                    f"({', '.join(self.targets)}), found {self.drills.target!r}",
                )
            )
        for name, target in self.targets.items():
            if target.integrity and target.database is None:
                found.append(
                    (
                        ("targets", name, "integrity"),
                        "expected a 'database' section "
                        "(dsn) on this target to count the integrity tables with",
                    )
                )
            if target.sentry and self.sentry is None:
                found.append(
                    (
                        ("targets", name, "sentry"),
                        "expected a top-level 'sentry' "
                        "section (api_url, organization, token) for this to use",
                    )
                )
        if "all" in self.targets:
            found.append(
                (
                    ("targets", "all"),
                    "expected another name: 'all' means every target (watchdog rollback all)",
                )
            )
        for index, name in enumerate(self.full_rollback.order):
            if name not in self.targets:
                found.append(
                    (
                        ("full_rollback", "order", index),
                        f"expected one of the targets ({', '.join(self.targets)}), found {name!r}",
                    )
                )
        if self.full_rollback.flags and self.flags is None:
            found.append(
                (
                    ("full_rollback", "flags"),
                    "expected a top-level 'flags' section to turn these flags off with",
                )
            )
        if not self.rules.is_file():
            found.append((("rules",), f"expected a rules file, found no file at {self.rules}"))
        return found


@dataclass(frozen=True)
class LoadedConfig:
    """Settings and rules, validated together; ``unset`` lists env vars that are not set."""

    settings: Settings
    rules: RuleSet
    unset: list[EnvRef]
    path: Path


def _known_keys(model: type[BaseModel], key: KeyPath, data: Any) -> list[str]:
    """The keys allowed under ``key`` in ``model``, following the document's values."""
    current: Any = model
    for part in key:
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        current = _field_model(current, part, data)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _field_model(model: Any, part: str | int, data: Any) -> Any:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        # inside a dict[str, X] or list[X]: X is the model
        args = typing.get_args(model)
        return _unwrap(args[-1], data) if args else None
    field = model.model_fields.get(str(part))
    if field is None:
        field = next((f for f in model.model_fields.values() if f.alias == part), None)
    return None if field is None else _unwrap(field.annotation, data)


def _unwrap(annotation: Any, data: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0], data)
    if origin in (dict, list):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args:
        kind = data.get("kind") if isinstance(data, dict) else None
        for arg in args:
            inner = _unwrap(arg, data)
            fields = getattr(inner, "model_fields", {})
            if "kind" not in fields or kind in typing.get_args(fields["kind"].annotation):
                return inner
        return None
    return annotation


def _overrides(prefix: str) -> dict[KeyPath, str]:
    """Which config keys an environment variable overrides: WATCHDOG_WATCH__INTERVAL →
    ("watch", "interval")."""
    return {
        tuple(name[len(prefix) :].lower().split("__")): name
        for name in os.environ
        if name.upper().startswith(prefix)
        and name[len(prefix) :].lower().split("__")[0] in Settings.model_fields
    }


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file; raise ConfigError with file, line, key and values."""
    doc = configfile.load(path, "a rules file with a 'rules' list")
    try:
        return RuleSet.model_validate(doc.data)
    except ValidationError as exc:
        raise configfile.validation_errors(
            doc, exc, lambda key: _known_keys(RuleSet, key, doc.data)
        ) from None


def load_config(path: Path) -> LoadedConfig:
    """Read the config file, apply ``WATCHDOG_*`` overrides, and load the rules it names."""
    doc = configfile.load(path, "the watchdog config; see config/watchdog.example.yaml")
    doc.overrides = _overrides(Settings.model_config.get("env_prefix", ""))
    try:
        settings = Settings(**doc.data)
    except SettingsError as exc:
        names = ", ".join(doc.overrides.values())
        raise ConfigError(
            f"environment ({names}): {exc}; an override of a whole section must be JSON"
        ) from None
    except ValidationError as exc:
        raise configfile.validation_errors(
            doc, exc, lambda key: _known_keys(Settings, key, doc.data)
        ) from None
    problems = settings.problems()
    if problems:
        raise ConfigError([f"{doc.where(key)}: {message}" for key, message in problems])
    rules = load_rules(settings.rules)
    return LoadedConfig(settings=settings, rules=rules, unset=doc.unset, path=path)
