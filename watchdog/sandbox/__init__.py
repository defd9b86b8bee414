"""Local stand-ins for Sentry, Vercel, Render, Railway, Slack and a toy app with a fault switch.

They answer exactly as ``shared/design/api-contracts.md`` says the real services do, so the
watchdog's clients can be tested, demonstrated and benchmarked without the internet.
"""
