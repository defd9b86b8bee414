"""Telling people: messages (Slack Block Kit), the notifiers that deliver them, the outbox
that retries them from the store, and the escalation chain."""
