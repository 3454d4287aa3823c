"""End-to-end fixtures: the local runner serving template.yaml's HttpApi routes over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from observai_local.functions import local_overrides
from observai_local.server import start_server


@pytest.fixture(scope="session")
def runner_url(database_url: str) -> Iterator[str]:
    """Base URL of the runner on a free port, its functions on the migrated test database (STAGE=test)."""
    server, base_url = start_server("127.0.0.1", 0, overrides=local_overrides("test", database_url), quiet=True)
    try:
        yield base_url
    finally:
        server.shutdown()
        server.server_close()
