"""The runbook's decision matrix as data, and the pure engine that applies it.

Nothing in this package does I/O or reads a clock: rules, a deployment, readings and ``now``
go in, a Decision comes out. ``tests/rules/test_purity.py`` holds it to that.
"""

from watchdog.rules.engine import decide
from watchdog.rules.schema import RuleSet

__all__ = ["RuleSet", "decide"]
