"""Fault injection: the real daemon (``watchdog run`` as a subprocess) against the sandbox's
stand-ins while something around it breaks. Each row of docs/reliability.md is a test here."""
