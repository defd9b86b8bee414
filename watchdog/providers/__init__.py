"""Rollback providers: one module per way the runbook rolls back (see ``base.py``)."""
