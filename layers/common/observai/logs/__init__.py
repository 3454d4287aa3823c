"""Logs: the query language and (later) search."""
