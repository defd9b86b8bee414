"""rollback-watchdog: watches each deploy and rolls it back when the runbook says so."""
