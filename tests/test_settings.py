"""The config file: what loads, what each mistake says, and that secrets stay secret."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import REPO
from watchdog.errors import ConfigError
from watchdog.settings import load_config, load_rules

RULES = REPO / "config" / "rules.yaml"
MINIMAL = f"""rules: {RULES}
targets:
  backend:
    provider: {{kind: render, service_id: srv-1, token: "${{RENDER_API_KEY}}"}}
"""


def write(tmp_path: Path, text: str, name: str = "watchdog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_the_shipped_example_loads_with_unset_secrets_as_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("SENTRY_AUTH_TOKEN", raising=False)
    config = load_config(Path("config/watchdog.example.yaml"))
    assert set(config.settings.targets) == {"frontend", "backend", "database", "staging-backend"}
    assert "SENTRY_AUTH_TOKEN" in [name for ref in config.unset for name in ref.missing]
    assert config.settings.watch.window == timedelta(minutes=10)
    assert len(config.rules.rules) >= 10


def test_an_unset_secret_fails_only_where_it_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RENDER_API_KEY", raising=False)
    config = load_config(write(tmp_path, MINIMAL))
    token = config.settings.targets["backend"].provider.token
    with pytest.raises(
        ConfigError,
        match=r"watchdog.yaml:4: targets.backend.provider.token: "
        r"environment variable RENDER_API_KEY is not set",
    ):
        token.reveal()


def test_secrets_are_expanded_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RENDER_API_KEY", "rnd_s3cr3t_value")
    config = load_config(write(tmp_path, MINIMAL))
    provider = config.settings.targets["backend"].provider
    assert provider.token.reveal() == "rnd_s3cr3t_value"
    for shown in (
        repr(config.settings),
        str(config.settings),
        repr(provider),
        config.settings.model_dump_json(),
    ):
        assert "rnd_s3cr3t_value" not in shown


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_WATCH__INTERVAL", "5s")
    monkeypatch.setenv("WATCHDOG_DRY_RUN", "true")
    config = load_config(write(tmp_path, MINIMAL + "watch: {interval: 30s, window: 10m}\n"))
    assert config.settings.watch.interval == timedelta(seconds=5)
    assert config.settings.dry_run is True


def test_api_urls_keep_the_origin_only(tmp_path: Path) -> None:
    text = MINIMAL.replace("kind: render,", "kind: render, api_url: 'https://api.render.com/v1/',")
    text += "sentry: {api_url: 'https://sentry.example.com/api/0/', organization: o, token: t}\n"
    settings = load_config(write(tmp_path, text)).settings
    assert settings.targets["backend"].provider.api_url == "https://api.render.com"
    assert settings.sentry is not None
    assert settings.sentry.api_url == "https://sentry.example.com"


BAD_CONFIGS = [
    (
        "kind typo",
        "provider: {kind: rendr, service_id: s, token: t}",
        "watchdog.yaml:4: targets.backend.provider.kind: expected one of vercel, render, railway, "
        "git, sql-migrations, found 'rendr' (did you mean 'render'?)",
    ),
    (
        "unknown key",
        "provider: {kind: render, service_id: s, token: t, tokn: u}",
        "watchdog.yaml:4: targets.backend.provider.tokn: unknown key (expected one of live_timeout, kind, "
        "api_url, service_id, token, disable_autodeploy) (did you mean 'token'?)",
    ),
    (
        "missing key",
        "provider: {kind: render, token: t}",
        "watchdog.yaml:4: targets.backend.provider.service_id: required key is missing",
    ),
    (
        "missing kind",
        "provider: {service_id: s, token: t}",
        "watchdog.yaml:4: targets.backend.provider: required key 'kind' is missing",
    ),
    (
        "bad url",
        "provider: {kind: render, service_id: s, token: t}\n"
        "    health: [{name: api, url: 'ftp://x'}]",
        "watchdog.yaml:5: targets.backend.health[0].url: expected an http(s) URL, found 'ftp://x'",
    ),
]


@pytest.mark.parametrize(
    ("provider", "message"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CONFIGS]
)
def test_each_mistake_in_a_target_is_one_precise_line(
    tmp_path: Path, provider: str, message: str
) -> None:
    text = f"rules: {RULES}\ntargets:\n  backend:\n    {provider}\n"
    found = problems(write(tmp_path, text))
    assert found == [f"{tmp_path}/{message}"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "watch: {window: 10 minutes}\n",
            "watch.window: expected a duration like 500ms, 15s, 10m or 1h, found '10 minutes'",
        ),
        (
            "watch: {interval: 15}\n",
            "watch.interval: expected a duration like 15s, 10m or 1h, found 15",
        ),
        ("watch: {interval: 20m}\n", "watch: expected 0 < interval < window"),
        ("dry_run: maybe\n", "dry_run: expected a valid boolean"),
        (
            "api: {listen: '${WATCHDOG_TEST_UNSET_LISTEN}'}\n",
            "api.listen: environment variable WATCHDOG_TEST_UNSET_LISTEN is not set",
        ),
        (
            "drills: {target: nowhere}\n",
            "drills.target: expected one of the targets (backend), found 'nowhere'",
        ),
        (
            "watch: {}\nrules: missing.yaml\n",
            "rules: expected a rules file, found no file at missing.yaml",
        ),
        ("targest: {}\n", "targest: unknown key"),
    ],
)
def test_each_mistake_at_the_top_is_named(tmp_path: Path, text: str, message: str) -> None:
    base = MINIMAL.split("\n", 1)[1] if text.startswith("watch: {}") else MINIMAL
    found = problems(write(tmp_path, base + text))
    assert any(message in line and str(tmp_path) in line for line in found), found


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "watchdog.yaml: the file is empty"),
        ("targets: [\n", "watchdog.yaml:2:1: YAML syntax error"),
        (
            "- a\n",
            "watchdog.yaml: expected the watchdog config; see config/watchdog.example.yaml as a "
            "mapping at the top level, found a list",
        ),
        (
            "dry_run: true\ndry_run: false\n",
            "watchdog.yaml:2:1: YAML syntax error: duplicate key 'dry_run' (first on line 1)",
        ),
    ],
)
def test_broken_files(tmp_path: Path, text: str, message: str) -> None:
    assert problems(write(tmp_path, text))[0].startswith(str(tmp_path / message))


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yaml") == [
        f"{tmp_path}/nope.yaml: file not found (expected the watchdog config; see "
        "config/watchdog.example.yaml)"
    ]


RULE = "rules:\n  - {name: r, when: WHEN, verdict: rollback}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            RULE.replace("WHEN", "{metric: eror_rate, op: '>', value: 0.01}"),
            "rules.yaml:2: rules[0].when.metric: expected one of error_rate, users_affected, "
            "latency_change, health, flow, migration_failed, flag_error_rate, security_alert, found "
            "'eror_rate' (did you mean 'error_rate'?)",
        ),
        (
            RULE.replace("WHEN", "{metric: error_rate, op: '>', value: 1.5}"),
            "rules.yaml:2: rules[0].when: expected a fraction between 0 and 1 for error_rate, found "
            "value 1.5",
        ),
        (
            RULE.replace("WHEN", "{metric: error_rate, op: '=>', value: 0.01}"),
            "rules.yaml:2: rules[0].when.op: expected '>', '>=', '<', '<=', '==', '!=' or 'between'",
        ),
        (
            RULE.replace("WHEN", "{metric: error_rate, op: '>', value: high}"),
            "rules.yaml:2: rules[0].when.value: expected a number, or [low, high] for 'between', "
            "found 'high'",
        ),
        (
            RULE.replace("WHEN", "{metric: health, labels: {flow: auth}, op: '==', value: 0}"),
            "rules.yaml:2: rules[0].when: expected a label of health (check), found label 'flow'",
        ),
        (
            RULE.replace("WHEN", "{any: [{metric: flow, op: '==', value: 2}]}"),
            "rules.yaml:2: rules[0].when.any[0]: expected 0 or 1 for flow, found value 2",
        ),
        (
            RULE.replace("WHEN", "{metric: error_rate, op: '>', value: 0.01}").replace(
                "verdict: rollback", "verdict: rollback, for: 2 minutes"
            ),
            "rules.yaml:2: rules[0].for: expected a duration like 500ms, 15s, 10m or 1h, found "
            "'2 minutes'",
        ),
        (
            RULE.replace("WHEN", "{metric: error_rate, op: '>', value: 0.01}").replace(
                "verdict: rollback", "verdict: rolback"
            ),
            "rules.yaml:2: rules[0].verdict: expected rollback, disable_flag or monitor, found "
            "'rolback' (did you mean 'rollback'?)",
        ),
        (
            RULE.replace("WHEN", "{metric: health, op: '==', value: 0}").replace(
                "verdict: rollback", "verdict: rollback, evidence: {confidence: 0.95}"
            ),
            "rules.yaml:2: rules[0]: expected evidence.confidence only with >, >=, < or <= on a rate",
        ),
        (
            RULE.replace("WHEN", "{metric: error_rate, op: '>', value: 0.01}").replace(
                "verdict: rollback", "verdict: disable_flag"
            ),
            "rules.yaml:2: rules[0]: expected a disable_flag rule to look only at flag_error_rate",
        ),
        (
            RULE.replace("WHEN", "{metric: error_rate, op: '>', value: 0.01}").replace(
                "verdict: rollback", "verdict: monitor, urgency: 5m"
            ),
            "rules.yaml:2: rules[0]: expected 'urgency' only on a rollback rule, found it on a "
            "monitor rule",
        ),
        (
            RULE.replace("WHEN", "{metric: error_rate, op: between, value: [0.01, 0.005]}"),
            "rules.yaml:2: rules[0].when: expected value [low, high] with low <= high for 'between'",
        ),
        (
            RULE.replace("WHEN", "{metric: error_rate, op: '>', value: 0.01}").replace(
                "verdict: rollback", "verdict: rollback, within: 10m, withn: 5m"
            ),
            "rules.yaml:2: rules[0].withn: unknown key",
        ),
        ("rules: []\n", "rules.yaml:1: rules: List should have at least 1 item"),
    ],
)
def test_each_mistake_in_a_rules_file_is_one_precise_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_rules(write(tmp_path, text, "rules.yaml"))
    assert len(info.value.problems) == 1, info.value.problems
    assert info.value.problems[0].startswith(str(tmp_path / message)), info.value.problems[0]


def test_a_bad_override_names_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_WATCH__INTERVAL", "soon")
    assert problems(write(tmp_path, MINIMAL)) == [
        "WATCHDOG_WATCH__INTERVAL (environment): watch.interval: expected a duration like "
        "500ms, 15s, 10m or 1h, found 'soon'"
    ]


def test_a_section_override_that_is_not_json_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_TARGETS", "not json")
    (problem,) = problems(write(tmp_path, MINIMAL))
    assert problem.startswith("environment (WATCHDOG_TARGETS): ")
    assert problem.endswith("an override of a whole section must be JSON")


def test_variables_sharing_the_prefix_are_not_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_CONFIG", "elsewhere.yaml")
    monkeypatch.setenv("WATCHDOG_TEST_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("WATCHDOG_SENTRY_DSN", "https://key@sentry.example/1")
    assert load_config(write(tmp_path, MINIMAL)).settings.targets
