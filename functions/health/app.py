"""Health: liveness (no auth, no database) and readiness (database reachable, migrations at head)."""

from __future__ import annotations

from observai.health import Liveness, Readiness, liveness, readiness
from observai.http.envelope import Envelope, ok
from observai.http.resolver import create_resolver, lambda_handler_for

app = create_resolver()


@app.get("/v1/health", tags=["health"])
def live() -> Envelope[Liveness]:
    return ok(liveness())


@app.get("/v1/health/ready", tags=["health"])
def ready() -> Envelope[Readiness]:
    return ok(readiness())


lambda_handler = lambda_handler_for(app)
