"""The rule engine does no I/O: it must not even import what could do it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

RULES_DIR = Path(__file__).parents[2] / "watchdog" / "rules"
# Not "socket": pydantic's network types load it whatever we import, so it proves nothing.
FORBIDDEN = (
    "httpx",
    "psycopg",
    "psycopg_pool",
    "apscheduler",
    "fastapi",
    "uvicorn",
    "yaml",
    "sqlite3",
    "asyncio",
    "structlog",
    "sentry_sdk",
    "watchdog.signals",
    "watchdog.providers",
    "watchdog.store",
    "watchdog.notify",
    "watchdog.settings",
    "watchdog.configfile",
    "watchdog.clock",
)
ALLOWED_TOP = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "itertools",
    "math",
    "statistics",
    "typing",
    "difflib",
    "pydantic",
    "watchdog",
}
ALLOWED_OWN = {"watchdog.model", "watchdog.durations"}


def test_importing_the_engine_loads_no_io_module() -> None:
    code = (
        "import json, sys; import watchdog.rules, watchdog.rules.replay; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []


def test_the_engine_source_imports_only_pure_modules() -> None:
    for path in RULES_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert name.split(".")[0] in ALLOWED_TOP, f"{path.name} imports {name}"
                if name.startswith("watchdog.") and not name.startswith("watchdog.rules"):
                    assert name in ALLOWED_OWN, f"{path.name} imports {name}"
