"""The embedded Postgres (pgserver: PostgreSQL 16, no system install) unless DATABASE_URL is set."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

HANDLES_FILE = ".handle_pids.json"  # pgserver's list of the processes using a data directory's server


def embedded_database_url(data_dir: Path, *, cleanup_mode: str | None = "stop") -> str:
    """Start (or reuse) an embedded Postgres whose data lives in ``data_dir``; return its URL.

    pgserver counts the processes using the server: with ``cleanup_mode="stop"`` (make dev, make invoke,
    make migrate...) the last of them to exit stops it, so Ctrl-C on `make dev` leaves nothing running while
    a `make invoke` beside it keeps it up; "delete" also removes the data (tests); None leaves it running.
    """
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - where pgserver keeps its socket
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver.postgres_server import PostgresServer

    data_dir.mkdir(parents=True, exist_ok=True)
    with PostgresServer._lock:  # the lock pgserver holds while it reads and writes the list
        forget_exited_handles(data_dir)
    server = pgserver.get_server(str(data_dir), cleanup_mode=cleanup_mode)
    return server.get_uri()


def forget_exited_handles(data_dir: Path) -> list[int]:
    """Drop from pgserver's list the processes that have exited without saying so (killed, crashed).

    pgserver stops the server when the last process on its list exits; a process killed with SIGKILL stays
    on the list forever, and then nothing ever stops the server. Returns the processes kept.
    """
    path = data_dir / HANDLES_FILE
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    alive = [pid for pid in pids if isinstance(pid, int) and _running(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))
    return alive


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def database_url(default_data_dir: Path, *, cleanup_mode: str | None = "stop") -> str:
    """DATABASE_URL when set, else the embedded server's URL."""
    return os.environ.get("DATABASE_URL") or embedded_database_url(default_data_dir, cleanup_mode=cleanup_mode)
