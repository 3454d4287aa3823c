"""boto3 clients, one per (service, timeouts, endpoint) per container, created on first use.

boto3 is imported here only when a client is first asked for, so no function pays for it at cold start.
Callers choose their timeouts: the ingest spool sits on the request path (short), exports upload large
files (long). Every S3 client comes from ``s3_client``: S3_ENDPOINT_URL points the spool and the exports alike at
a compatible store (MinIO, moto's server, Supabase Storage), addressed path-style as those expect.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from observai.config import Settings, get_settings


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


def s3_client(timeouts: Timeouts, settings: Settings | None = None) -> Any:
    """The S3 client: AWS's S3, or the S3-compatible store S3_ENDPOINT_URL names (one setting for every user)."""
    settings = settings or get_settings()
    return aws_client("s3", timeouts, settings.s3_endpoint_url)


def reset_clients() -> None:
    """Forget the cached clients (tests: a new moto mock, another region)."""
    with _lock:
        _clients.clear()
