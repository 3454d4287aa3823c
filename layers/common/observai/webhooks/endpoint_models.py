"""What the webhook endpoints API takes and returns.

The URL's syntax (scheme, port, no credentials...) is checked here, without DNS, by the SSRF guard's
``validate_url_syntax`` (so a bad URL is a 422 at ``["body", "url"]`` like any invalid field); whether its host
resolves to a public address is checked by the service (``check_url``) once the caller is authorized.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from observai.outbox import EVENT_TYPES
from observai.patch_models import refuse_null, require_a_field

MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 1000
MAX_RATE_LIMIT_PER_S = 10_000
TEST_EVENT_TYPE: Literal["webhook.test"] = "webhook.test"
SUBSCRIBABLE = sorted(EVENT_TYPES)


def _syntax(url: str) -> str:
    # Imported here: the guard pulls in the resolver; the models are imported by every webhooks module.
    from observai.webhooks.ssrf import UnsafeTarget, validate_url_syntax

    try:
        validate_url_syntax(url)
    except UnsafeTarget as exc:
        raise ValueError(exc.reason) from None
    return url


def _known_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(f"unknown event type {value!r}; one of: {', '.join(SUBSCRIBABLE)}")
    return value


def _distinct(values: list[str] | None) -> list[str] | None:
    # Sorted and without repeats: the stored filter compares equal however the caller listed it.
    return None if values is None else sorted(set(values))


WebhookUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=8, max_length=MAX_URL_LENGTH),
    AfterValidator(_syntax),
    Field(
        description="Where events are POSTed: https (http and loopback only on local stages), port 443, 80 or 8443,"
        " a host that resolves to public addresses only",
        examples=["https://example.com/hooks/observai"],
    ),
]
EventType = Annotated[str, AfterValidator(_known_type), Field(json_schema_extra={"enum": SUBSCRIBABLE})]
EventTypes = Annotated[
    list[EventType] | None,
    Field(min_length=1, max_length=50, description="Only these event types; null (the default) sends every type"),
    AfterValidator(_distinct),
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_DESCRIPTION_LENGTH)]
RateLimit = Annotated[
    int | None,
    Field(
        ge=1,
        le=MAX_RATE_LIMIT_PER_S,
        description="At most this many deliveries a second to this endpoint; null: no limit of its own",
    ),
]


class WebhookEndpointIn(BaseModel):
    """A new endpoint: the URL events are sent to and which events."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    url: WebhookUrl
    description: Description = ""
    event_types: EventTypes = None
    enabled: bool = True
    rate_limit_per_s: RateLimit = None


class WebhookEndpointPatch(BaseModel):
    """The fields given replace theirs; fields left out keep their value. ``event_types`` and ``rate_limit_per_s``
    may be set to null (every event type; no limit of its own); ``url``, ``description`` and ``enabled`` may not."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    url: WebhookUrl | None = None
    description: Description | None = None
    event_types: EventTypes = None
    enabled: bool | None = Field(
        default=None, description="true re-enables an endpoint the delivery engine disabled (clears disabled_reason)"
    )
    rate_limit_per_s: RateLimit = None

    _not_null = refuse_null("url", "description", "enabled")
    _something = require_a_field()


class WebhookEndpoint(BaseModel):
    """An endpoint as everyone who may read the project sees it: never its secret, only the secret's hint."""

    model_config = ConfigDict(defer_build=True)

    id: UUID
    project_id: UUID
    url: str
    description: str
    event_types: list[str] | None = Field(description="The event types it receives; null: every type")
    enabled: bool
    rate_limit_per_s: int | None
    secret_hint: str = Field(description="whsec_… and the secret's last 4 characters, to tell secrets apart")
    previous_secret_expires_at: datetime | None = Field(
        description="During a rotation: until when the previous secret signs too (null when none does)"
    )
    disabled_reason: str | None = Field(
        description="Why the delivery engine disabled it (410 Gone, failing for 5 days); null when a person did"
    )
    disabled_at: datetime | None
    failing_since: datetime | None = Field(description="The first failure of its current run of failures")
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str = Field(
        description="The signing secret (whsec_ + base64): shown only in this response. Store it now; it is never"
        " shown again (rotate it for a new one)."
    )


class WebhookEndpointDeleted(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    deleted: Literal[True] = True
    stopped_messages: int = Field(description="Messages that were waiting for delivery to it, now failed")


class WebhookTestResult(BaseModel):
    """What the receiver answered to a ``webhook.test`` event sent just now (nothing is recorded or retried)."""

    model_config = ConfigDict(defer_build=True)

    webhook_id: str = Field(description="The webhook-id header of the test message")
    event_type: Literal["webhook.test"] = TEST_EVENT_TYPE
    succeeded: bool = Field(description="The receiver answered 2xx")
    status_code: int | None = Field(description="The receiver's HTTP status; null when it did not answer")
    duration_ms: int
    response_excerpt: str | None = Field(description="The first kilobyte of its response body")
    error: str | None = Field(description="Why it failed: timeout, refused connection, unsafe address, non-2xx...")
