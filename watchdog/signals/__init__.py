"""Signal sources: each reads one kind of evidence about a deployment and turns it into readings.

A source never raises for a remote failure: a timeout, an error status or an unparsable answer
becomes a ``ProbeError`` and no reading (see ``base.py``).
"""
