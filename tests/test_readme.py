"""The README's configuration reference is the one the settings models generate."""

from __future__ import annotations

from tests.conftest import REPO
from watchdog.configref import reference

START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def test_the_readme_lists_every_config_key_as_the_models_define_it() -> None:
    text = (REPO / "README.md").read_text()
    documented = text[text.index(START) + len(START) : text.index(END)]
    assert documented == reference(), "run: python -m watchdog.configref, paste into README.md"


def test_the_reference_names_every_section_and_provider_key() -> None:
    table = reference()
    for key in ("state.url", "targets.<name>.provider.service_id", "escalation[].after"):
        assert f"| `{key}` |" in table
    assert "drills.schedule" in table
