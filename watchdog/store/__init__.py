"""The state store: every deployment, watch, reading, decision, action and notification.

``base.py`` holds the StateStore protocol and its records; ``sqlite.py`` is the embedded
default (one replica), ``postgres.py`` the one for production and several replicas.
"""
