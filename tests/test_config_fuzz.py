"""Whatever YAML people write, the answer is a ConfigError, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO
from watchdog.errors import ConfigError
from watchdog.settings import load_config, load_rules

WORDS = [
    "rules",
    "targets",
    "provider",
    "kind",
    "render",
    "vercel",
    "when",
    "metric",
    "error_rate",
    "flow",
    "op",
    ">",
    "between",
    "value",
    "for",
    "within",
    "verdict",
    "rollback",
    "monitor",
    "evidence",
    "confidence",
    "trend",
    "labels",
    "any",
    "all",
    "watch",
    "interval",
    "10m",
    "${UNSET_FUZZ_VAR}",
    "token",
    "health",
    "url",
    "name",
]
scalars = (
    st.sampled_from(WORDS)
    | st.text(max_size=8)
    | st.integers(-5, 5)
    | st.floats(allow_nan=True)
    | st.booleans()
    | st.none()
)
trees = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=5), kids, max_size=5)
    ),
    max_leaves=30,
)
rule_like = st.fixed_dictionaries(
    {
        "rules": st.lists(
            st.dictionaries(st.sampled_from(WORDS), trees, max_size=6), min_size=1, max_size=3
        )
    }
)
config_like = st.fixed_dictionaries(
    {
        "rules": st.just(str(REPO / "config" / "rules.yaml")),
        "targets": st.dictionaries(st.sampled_from(WORDS), trees, max_size=3),
    }
)


def only_config_errors(path: Path, text: str, load: Callable[[Path], object]) -> None:
    """Loading either succeeds or raises ConfigError whose every line names the file."""
    path.write_text(text)
    try:
        load(path)
    except ConfigError as exc:
        problems = exc.problems
    else:
        return
    assert problems
    assert all(p.startswith(str(path)) for p in problems), problems


FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(trees | rule_like)
def test_random_rules_files(tmp_path: Path, tree: object) -> None:
    only_config_errors(tmp_path / "rules.yaml", yaml.safe_dump(tree), load_rules)


@FUZZ
@given(trees | config_like)
def test_random_config_files(tmp_path: Path, tree: object) -> None:
    only_config_errors(tmp_path / "watchdog.yaml", yaml.safe_dump(tree), load_config)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-'\"&*!|>%@` \n\t#ab1")), max_size=60))
def test_random_text(tmp_path: Path, text: str) -> None:
    only_config_errors(tmp_path / "rules.yaml", text, load_rules)
