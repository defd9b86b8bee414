"""The rule language: structured, validated conditions over the metric catalog (no ``eval``).

A rule says *what* must be seen (``when``), *for how long* (``for``), *on how much traffic*
(``evidence``), *in which shape* (``trend``), *when* it applies (``within``) and *what to do*
(``verdict`` with its urgency, scope or monitoring plan). The engine gives every rule the same
meaning; nothing here knows where readings come from.
"""

from __future__ import annotations

import difflib
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from watchdog.durations import format_duration, parse_duration
from watchdog.model import Scope, Verdict
from watchdog.rules.metrics import CATALOG, Kind


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, timedelta):
        return value
    raise ValueError(f"expected a duration like 15s, 10m or 1h, found {value!r}")


def _threshold(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return (float(value[0]), float(value[1]))
    raise ValueError(f"expected a number, or [low, high] for 'between', found {value!r}")


def _verdict(value: Any) -> Verdict:
    allowed = (Verdict.ROLLBACK, Verdict.DISABLE_FLAG, Verdict.MONITOR)
    if value in allowed:
        return Verdict(value)
    close = difflib.get_close_matches(str(value), [str(v) for v in allowed], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"expected rollback, disable_flag or monitor, found {value!r}{hint}")


def _urgency(value: Any) -> Any:
    if value == "immediate" or isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            pass
    raise ValueError(f"expected 'immediate' or a duration like 10m, found {value!r}")


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Op = Literal[">", ">=", "<", "<=", "==", "!=", "between"]
Threshold = Annotated[float | tuple[float, float], BeforeValidator(_threshold)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Leaf(_Strict):
    """One comparison on one metric, for every series whose labels match."""

    metric: str
    labels: dict[str, str | list[str]] = Field(default_factory=dict)
    op: Op
    value: Threshold

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        if name not in CATALOG:
            close = difflib.get_close_matches(name, list(CATALOG), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"expected one of {', '.join(CATALOG)}, found {name!r}{hint}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> Leaf:
        metric = CATALOG[self.metric]
        for label, wanted in self.labels.items():
            if label not in metric.labels:
                allowed = ", ".join(metric.labels) or "none"
                raise ValueError(
                    f"expected a label of {self.metric} ({allowed}), found label {label!r}"
                )
            choices = metric.label_values.get(label)
            for item in [wanted] if isinstance(wanted, str) else wanted:
                if choices and item not in choices:
                    raise ValueError(
                        f"expected {label} to be one of {', '.join(choices)}, found {item!r}"
                    )
        if self.op == "between":
            if not isinstance(self.value, tuple) or self.value[0] > self.value[1]:
                raise ValueError(
                    f"expected value [low, high] with low <= high for 'between', "
                    f"found {self.value!r}"
                )
            bounds = list(self.value)
        else:
            if isinstance(self.value, tuple):
                raise ValueError(f"expected one number for {self.op!r}, found {list(self.value)}")
            bounds = [self.value]
        for bound in bounds:
            problem = metric.value_problem(bound)
            if problem:
                raise ValueError(f"{problem} for {self.metric}, found value {bound}")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        for label, wanted in self.labels.items():
            have = labels.get(label)
            if have is None or (have != wanted if isinstance(wanted, str) else have not in wanted):
                return False
        return True

    def compare(self, value: float) -> bool:
        if isinstance(self.value, tuple):
            return self.value[0] <= value <= self.value[1]
        return bool(_COMPARE[self.op](value, self.value))


_COMPARE = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


class AllOf(_Strict):
    """Every child condition holds at the same moment."""

    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    """At least one child condition holds."""

    any: list[Condition] = Field(min_length=1)


def _condition_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "all-of" if "all" in value else "any-of" if "any" in value else "leaf"
    if isinstance(value, AllOf):
        return "all-of"
    return "any-of" if isinstance(value, AnyOf) else "leaf"


Condition = Annotated[
    Annotated[Leaf, Tag("leaf")]
    | Annotated[AllOf, Tag("all-of")]
    | Annotated[AnyOf, Tag("any-of")],
    Discriminator(_condition_tag),
]


class Evidence(_Strict):
    """How much traffic a reading needs before it may count as a breach."""

    min_samples: int = Field(default=0, ge=0)
    confidence: float | None = Field(default=None, gt=0.5, lt=1)


class Trend(_Strict):
    """The last ``readings`` readings of the series rise (or fall) strictly, with no gap."""

    direction: Literal["increasing", "decreasing"] = "increasing"
    readings: int = Field(default=3, ge=2)


class MonitorPlan(_Strict):
    """How long to watch a monitor verdict, and what follows when it is still true then."""

    hold_for: Duration = Field(alias="for")
    then: Literal["alert", "rollback"] = "alert"


def _hold(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number of readings (2) or a duration (2m), found {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"expected at least 1 reading, found {value}")
        return value
    return _duration(value)


Hold = Annotated[int | timedelta, BeforeValidator(_hold)]


class Rule(_Strict):
    """One line of the decision matrix."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    runbook: str = ""
    when: Condition
    within: Duration | None = None
    hold: Hold | None = Field(default=None, alias="for")
    evidence: Evidence | None = None
    trend: Trend | None = None
    verdict: Annotated[Verdict, BeforeValidator(_verdict)]
    urgency: Annotated[Literal["immediate"] | timedelta, BeforeValidator(_urgency)] = "immediate"
    scope: Scope = Scope.APPLICATION
    monitor: MonitorPlan | None = None

    @model_validator(mode="before")
    @classmethod
    def _verdict_only_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            verdict = data.get("verdict")
            for key, owner in (
                ("urgency", "rollback"),
                ("scope", "rollback"),
                ("monitor", "monitor"),
            ):
                if key in data and verdict != owner:
                    raise ValueError(
                        f"expected {key!r} only on a {owner} rule, found it on a {verdict} rule"
                    )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        leaves = list(self.leaves())
        if self.evidence and self.evidence.confidence is not None:
            for leaf in leaves:
                if CATALOG[leaf.metric].kind is not Kind.FRACTION or leaf.op not in (
                    ">",
                    ">=",
                    "<",
                    "<=",
                ):
                    raise ValueError(
                        "expected evidence.confidence only with >, >=, < or <= on a rate "
                        f"(error_rate, users_affected, flag_error_rate), found {leaf.metric} "
                        f"{leaf.op}"
                    )
        if self.verdict is Verdict.DISABLE_FLAG and any(
            leaf.metric != "flag_error_rate" for leaf in leaves
        ):
            raise ValueError(
                "expected a disable_flag rule to look only at flag_error_rate, "
                "which names the flag to disable"
            )
        return self

    def leaves(self) -> list[Leaf]:
        out: list[Leaf] = []
        stack: list[Leaf | AllOf | AnyOf] = [self.when]
        while stack:
            node = stack.pop()
            if isinstance(node, Leaf):
                out.append(node)
            else:
                stack.extend(node.all if isinstance(node, AllOf) else node.any)
        return out[::-1]

    @property
    def urgency_text(self) -> str:
        if isinstance(self.urgency, timedelta):
            return f"within {format_duration(self.urgency)}"
        return "immediate"


class Inconclusive(_Strict):
    """When the watch admits it is blind: this metric absent for this many intervals."""

    metric: str = "error_rate"
    missing_intervals: int = Field(default=3, ge=1)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        return Leaf._known_metric(name)


class RuleSet(_Strict):
    """A whole rules file. Order matters: among rules of one verdict, the first one wins."""

    version: Literal[1] = 1
    inconclusive: Inconclusive = Field(default_factory=Inconclusive)
    rules: list[Rule] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"expected unique rule names, found {rule.name!r} twice")
            seen.add(rule.name)
        return rules
