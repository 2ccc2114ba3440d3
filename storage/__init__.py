"""Persistence without Ray: the event log, stream-backed state, secrets."""
