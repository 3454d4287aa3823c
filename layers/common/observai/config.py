"""Typed settings, read from the environment at first use (never at import) so tests can set them; within a
Lambda invocation (``settings_per_invocation``), once per invocation.

Secrets (database URL, Supabase JWT secret, service role key) come either from plain environment
variables (local development, tests) or from one Secrets Manager secret holding a JSON object,
named by ``APP_SECRET_ARN``; the secret is fetched once per container and cached by Powertools
Parameters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

# The Supabase CLI's well-known development JWT secret: only ever a default when STAGE=local.
SUPABASE_CLI_DEV_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"

SECRET_CACHE_SECONDS = 300


class Settings(BaseModel):
    stage: Literal["local", "test", "dev", "prod"] = "local"
    service_name: str = "observai"
    database_url: SecretStr | None = None
    db_statement_timeout_ms: int = Field(default=5000, ge=100, le=900_000)
    db_idle_in_transaction_timeout_ms: int = Field(default=10_000, ge=100, le=900_000)
    db_connect_timeout_s: int = Field(default=5, ge=1, le=60)
    supabase_url: str | None = None
    supabase_jwt_secret: SecretStr | None = None
    supabase_jwks_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    jwt_audience: str = "authenticated"
    api_key_cache_ttl_s: int = Field(default=60, ge=0, le=3600)
    api_key_rotation_grace_s: int = Field(default=86_400, ge=0, le=7 * 86_400)
    rate_limit_per_second: float = Field(default=20.0, gt=0)
    rate_limit_burst: int = Field(default=100, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    invite_redirect_url: str | None = None
    # Backpressure (observai.db.breaker, spool, drain): the database circuit breaker and the spool.
    breaker_failure_threshold: int = Field(default=3, ge=1, le=100)
    breaker_cooldown_s: float = Field(default=10.0, gt=0, le=3600)
    breaker_max_cooldown_s: float = Field(default=60.0, gt=0, le=3600)
    spool_queue_url: str | None = None
    spool_bucket: str | None = None
    spool_inline_max_bytes: int = Field(default=200_000, ge=1024, le=250_000)
    # An S3-compatible store (MinIO, moto's server, Supabase Storage's /storage/v1/s3) for every S3 client, the
    # spool's and the exports' (observai.aws_clients.s3_client); unset means AWS S3.
    s3_endpoint_url: str | None = None
    # Exports (observai.exports): the queue the API enqueues on and the one bucket of the deployment.
    export_queue_url: str | None = None
    export_bucket: str | None = None
    export_max_rows: int = Field(default=1_000_000, ge=1, le=50_000_000)
    export_max_concurrent: int = Field(default=3, ge=1, le=100)  # queued + running, per project
    export_url_ttl_s: int = Field(default=3600, ge=60, le=7 * 86_400)  # pre-signed download links
    export_keep_days: int = Field(default=7, ge=1, le=365)  # the bucket's lifecycle rule agrees
    # Log search (observai.logs.search): no new scan round after this; the page then ends early with a cursor.
    log_search_budget_ms: int = Field(default=75, ge=0, le=10_000)
    # Log histogram (observai.logs.search.histogram): a count of matching lines (free text, attributes) that
    # takes longer is cancelled and answered 422 "narrow the range" (below the statement timeout: never a 503).
    log_histogram_budget_ms: int = Field(default=2_500, ge=1, le=60_000)
    # Alerting (observai.alerts): evaluate-alerts claims at most this many due rules per run and stops starting
    # new work after its time budget; the group timers go on this queue as SQS delay messages (unset: the
    # dispatcher's minute sweep alone fires them).
    alert_eval_max_rules: int = Field(default=5_000, ge=1, le=100_000)
    alert_eval_budget_s: float = Field(default=45.0, gt=0, le=840)
    alert_timer_queue_url: str | None = None
    # Outbound webhooks (observai.webhooks): the delivery queue (SQS delay messages for short retries), and whether
    # deliveries may reach loopback addresses (local stages only: tests and `make dev` run receivers on localhost).
    webhook_queue_url: str | None = None
    webhook_allow_loopback: bool = False
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=60)
    # The key that encrypts the endpoints' signing secrets at rest (AES-256-GCM): base64 of 32 bytes, from the app
    # secret in AWS; local and test stages fall back to a fixed development key (observai.webhooks.signing).
    webhook_secret_key: SecretStr | None = None
    # The delivery engine (observai.webhooks.delivery): at most this many deliveries of one endpoint in flight at
    # once (a slow receiver holds only its own slots), and the SES sender of the notice that an endpoint was
    # disabled after failing for 5 days (unset: the endpoint is disabled without an e-mail, and a warning logged).
    webhook_max_in_flight_per_endpoint: int = Field(default=4, ge=1, le=100)
    webhook_notice_sender: str | None = None
    # Paging (observai.notify, observai.escalation, observai.oncall): the delivery queue (with its DLQ) and the
    # escalation timers' queue (SQS delay messages; unset: the minute sweeps alone); the KMS key that seals channel
    # secrets (envelope encryption); the SES sender of e-mail notifications; PagerDuty's Events API v2 URL (a
    # setting, so tests and `make dev` point it at a local stand-in); whether Slack and webhook channels may reach
    # loopback (local stages only).
    notify_queue_url: str | None = None
    escalation_queue_url: str | None = None
    notify_kms_key_id: str | None = None
    notify_email_sender: str | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    notify_allow_loopback: bool = False
    notify_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # Acknowledge and resolve links in messages: signed with this key (HMAC-SHA256), valid this long, pointing at
    # this public base URL (the API's); Slack's request signing secret for its interactive buttons.
    action_link_secret: SecretStr | None = None
    action_link_ttl_s: int = Field(default=86_400, ge=300, le=30 * 86_400)
    public_base_url: str | None = None
    slack_signing_secret: SecretStr | None = None
    # AI insights (observai.ai): the Gemini API key (from the app secret in AWS; unset: the AI features are off and
    # their routes say so), the API's base URL (a setting, so tests point the google-genai client at a local
    # stand-in), the model names, and the bounds of one call (timeout, retries on 429/5xx with backoff); the queue
    # of the AI worker (summaries and embeddings of resolved incidents; unset: its minute sweep alone).
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str | None = None
    ai_generation_model: str = "gemini-2.5-flash"
    ai_embedding_model: str = "gemini-embedding-001"
    ai_embedding_dimensions: int = Field(default=768, ge=8, le=2000)  # pgvector's HNSW indexes up to 2,000
    ai_timeout_s: float = Field(default=20.0, gt=0, le=120)
    ai_max_retries: int = Field(default=2, ge=0, le=5)
    # One call as a whole (attempts, waits between them) stays within this (below API Gateway's 29 s); a circuit
    # breaker per container opens after this many failed attempts in a row and refuses calls for the cool-down;
    # Gemini 2.5's thinking budget (0: off, the default for the Flash models: the answers are bounded JSON; -1: the
    # model decides; the Pro models refuse 0).
    ai_total_timeout_s: float = Field(default=25.0, gt=0, le=840)
    ai_breaker_failures: int = Field(default=5, ge=1, le=100)
    ai_breaker_cooldown_s: float = Field(default=30.0, gt=0, le=3600)
    ai_thinking_budget: int | None = Field(default=0, ge=-1, le=32_768)
    ai_task_queue_url: str | None = None

    @property
    def jwks_url(self) -> str | None:
        if self.supabase_jwks_url:
            return self.supabase_jwks_url
        if self.supabase_url:
            return self.supabase_url.rstrip("/") + "/auth/v1/.well-known/jwks.json"
        return None

    @property
    def jwt_secret(self) -> str | None:
        if self.supabase_jwt_secret is not None:
            return self.supabase_jwt_secret.get_secret_value()
        if self.stage in ("local", "test"):
            return SUPABASE_CLI_DEV_JWT_SECRET
        return None


_SECRET_KEYS = (
    "database_url",
    "supabase_jwt_secret",
    "supabase_service_role_key",
    "webhook_secret_key",
    "action_link_secret",
    "slack_signing_secret",
    "gemini_api_key",
)


def _secret_values(arn: str) -> dict[str, Any]:
    # Imported here: Parameters pulls in boto3, which only deployed functions need.
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(arn, transform="json", max_age=SECRET_CACHE_SECONDS)
    return value if isinstance(value, dict) else {}


class _InvocationSettings:
    """The settings of the running invocation, read at its first ``get_settings`` (none read: None)."""

    __slots__ = ("settings",)

    def __init__(self) -> None:
        self.settings: Settings | None = None


_invocation: ContextVar[_InvocationSettings | None] = ContextVar("observai_invocation_settings", default=None)


@contextmanager
def settings_per_invocation() -> Iterator[None]:
    """Within the block (one Lambda invocation), ``get_settings`` reads the environment once, at its first call.

    A request asked for them several times (authentication, the rate limit, the transaction), ~30 µs each. The
    next invocation reads them afresh: the environment may change between invocations (tests), never within one.
    """
    token = _invocation.set(_InvocationSettings())
    try:
        yield
    finally:
        _invocation.reset(token)


def get_settings() -> Settings:
    """The settings: the invocation's (``settings_per_invocation``), else built from the current environment."""
    invocation = _invocation.get()
    if invocation is None:
        return _read_settings()
    if invocation.settings is None:
        invocation.settings = _read_settings()  # lazily: a failure is raised where it was, and not remembered
    return invocation.settings


def _read_settings() -> Settings:
    """Build the settings from the current environment (cheap; secrets are cached per container)."""
    env = os.environ
    raw: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = env.get(name.upper())
        if value is not None and value != "":
            raw[name] = value
    arn = env.get("APP_SECRET_ARN")
    if arn and any(key not in raw for key in _SECRET_KEYS):
        secret = _secret_values(arn)
        for key in _SECRET_KEYS:
            if key not in raw and secret.get(key):
                raw[key] = secret[key]
    return Settings.model_validate(raw)
