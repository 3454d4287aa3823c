"""Retention: how long each stored row is kept (policy) and the daily job that drops what expired (cleanup)."""
