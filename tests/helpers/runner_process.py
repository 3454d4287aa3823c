"""The local runner as a user starts it: `make dev` (or `python -m observai_local ...`) in its own process, with
its own state directory (OBSERVAI_STATE_DIR: its embedded Postgres and dev.json), on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
# What the test process sets for itself (its own database, stage) or a shell may carry: not the runner's.
NOT_PASSED = (
    "DATABASE_URL",
    "DATABASE_URL_FOR_TESTS",
    "STAGE",
    "PORT",
    "HOST",
    "SPOOL_QUEUE_URL",
    "SPOOL_BUCKET",
    "EXPORT_QUEUE_URL",
    "EXPORT_BUCKET",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def runner_env(state_dir: Path, port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_PASSED}
    env["OBSERVAI_STATE_DIR"] = str(state_dir)
    if port is not None:
        env["PORT"] = str(port)
    return env


def postgres_pid(pgdata: Path) -> int | None:
    """The embedded Postgres's postmaster pid when it runs, else None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


class RunnerProcess:
    """`make dev` (or any command) in a new session, as a terminal runs it; Ctrl-C is SIGINT to the group."""

    def __init__(self, command: list[str], state_dir: Path, port: int, log_path: Path) -> None:
        self.state_dir, self.port, self.log_path = state_dir, port, log_path
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=runner_env(state_dir, port),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 40.0) -> None:
        """Until /v1/health answers 200 and dev.json is written (the banner's last step)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the runner exited ({self.process.returncode}):\n{self.output}")
            try:
                if (
                    httpx.get(f"{self.base_url}/v1/health", timeout=2).status_code == 200
                    and "Ctrl-C stops" in self.output
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the runner did not answer within {timeout}s:\n{self.output}")

    def signal(self, signum: int = signal.SIGINT, timeout: float = 20.0) -> int:
        """Send ``signum`` to the whole process group (Ctrl-C in a terminal); wait for the exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()


def stop_leftover_postgres(pgdata: Path, timeout: float = 10.0) -> None:
    """Teardown of a failed test: stop the embedded Postgres it left running (fast shutdown), if any."""
    pid = postgres_pid(pgdata)
    if pid is None:
        return
    os.kill(pid, signal.SIGINT)  # Postgres's "fast" shutdown
    deadline = time.monotonic() + timeout
    while postgres_pid(pgdata) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
