"""The embedded Postgres (pgserver: PostgreSQL 16, no system install) unless DATABASE_URL is set."""

from __future__ import annotations

import os
import warnings
from pathlib import Path


def embedded_database_url(data_dir: Path, *, cleanup_mode: str | None = None) -> str:
    """Start (or reuse) an embedded Postgres whose data lives in ``data_dir``; return its URL.

    ``cleanup_mode=None`` leaves the server running for the next run (make dev); "stop" stops it
    when this process exits; "delete" also removes the data (tests).
    """
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - where pgserver keeps its socket
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode=cleanup_mode)
    return server.get_uri()


def database_url(default_data_dir: Path, *, cleanup_mode: str | None = None) -> str:
    """DATABASE_URL when set, else the embedded server's URL."""
    return os.environ.get("DATABASE_URL") or embedded_database_url(default_data_dir, cleanup_mode=cleanup_mode)
