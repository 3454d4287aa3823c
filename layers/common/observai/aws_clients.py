"""boto3 clients, one per (service, timeouts, endpoint) per container, created on first use.

boto3 is imported here only when a client is first asked for, so no function pays for it at cold start.
Callers choose their timeouts: the ingest spool sits on the request path (short), exports upload large
files (long). An endpoint URL points S3 at a compatible store, addressed path-style as those expect.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    read_s: float
    max_attempts: int


_clients: dict[tuple[str, Timeouts, str | None], Any] = {}
_lock = threading.Lock()


def aws_client(service: str, timeouts: Timeouts, endpoint_url: str | None = None) -> Any:
    key = (service, timeouts, endpoint_url)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=timeouts.connect_s,
                    read_timeout=timeouts.read_s,
                    retries={"mode": "standard", "max_attempts": timeouts.max_attempts},
                    signature_version="s3v4" if service == "s3" else None,
                    s3={"addressing_style": "path"} if service == "s3" and endpoint_url else None,
                )
                client = boto3.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]
                _clients[key] = client
    return client


def reset_clients() -> None:
    """Forget the cached clients (tests: a new moto mock, another region)."""
    with _lock:
        _clients.clear()
