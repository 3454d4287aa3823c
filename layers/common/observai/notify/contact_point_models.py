"""What the contact points API takes and returns.

A contact point is ``{"name", "kind", "enabled", "settings"}``; ``settings`` depends on ``kind`` (a discriminated
union on ``kind``): email ``{"addresses": [...]}``, slack ``{"url"}`` (secret), pagerduty ``{"routing_key"}``
(secret) and an optional ``severity_map``, webhook ``{"url"}``. Secrets are write-only: responses show
``secret_hint`` (their last 4 characters) and never the secret.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID as UUID_T

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from observai.patch_models import refuse_null, require_a_field
from observai.webhooks.endpoint_models import WebhookUrl

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$"
MAX_ADDRESSES = 50
Kind = Literal["email", "slack", "pagerduty", "webhook"]
Severity = Literal["critical", "error", "warning", "info"]
PagerDutySeverity = Literal["critical", "error", "warning", "info"]

# Pragmatic (RFC 5321 sizes, one @, a dotted domain of letters, digits and hyphens): SES refuses the rest anyway.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}$"
)


def _address(value: str) -> str:
    if not _ADDRESS.match(value) or ".." in value or value.startswith(".") or value.split("@")[0].endswith("."):
        raise ValueError("not a valid e-mail address")
    return value


def _distinct(values: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.lower(), value)
    return list(seen.values())


def _slack_url(url: str) -> str:
    from observai.config import get_settings
    from observai.notify.channels.slack import validate_url

    validate_url(url, get_settings())
    return url


Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(
        description="Unique among the project's contact points; routes name it (receivers.contact_points)",
        examples=["team-oncall"],
    ),
]
EmailAddress = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_address)]
SlackUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=10, max_length=2048),
    AfterValidator(_slack_url),
    Field(
        description="The Slack incoming webhook URL (a secret: never returned). https://hooks.slack.com/services/…"
        " outside local stages",
        examples=["https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"],
    ),
]
RoutingKey = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9]{32}$"),
    Field(description="The PagerDuty Events API v2 integration key, 32 characters (a secret: never returned)"),
]
SeverityMap = Annotated[
    dict[Severity, PagerDutySeverity] | None,
    Field(
        description="Our severity → PagerDuty's (default: critical → critical, error → error, warning → warning,"
        " info → info)",
        examples=[{"warning": "error"}],
    ),
]
Addresses = Annotated[
    list[EmailAddress],
    Field(min_length=1, max_length=MAX_ADDRESSES, description="1 to 50 recipients"),
    AfterValidator(_distinct),
]


class EmailSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    addresses: Addresses


class SlackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    url: SlackUrl


class PagerDutySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    routing_key: RoutingKey
    severity_map: SeverityMap = None


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    url: WebhookUrl


class _ContactPointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: Name
    enabled: bool = True


class EmailContactPointIn(_ContactPointIn):
    kind: Literal["email"]
    settings: EmailSettings


class SlackContactPointIn(_ContactPointIn):
    kind: Literal["slack"]
    settings: SlackSettings


class PagerDutyContactPointIn(_ContactPointIn):
    kind: Literal["pagerduty"]
    settings: PagerDutySettings


class WebhookContactPointIn(_ContactPointIn):
    kind: Literal["webhook"]
    settings: WebhookSettings


ContactPointIn = Annotated[
    EmailContactPointIn | SlackContactPointIn | PagerDutyContactPointIn | WebhookContactPointIn,
    Field(discriminator="kind"),
]


# --- PATCH: settings given are merged into the kind's (a secret given replaces it) -----------------------------


class EmailSettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    addresses: Addresses


class SlackSettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    url: SlackUrl


class PagerDutySettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    routing_key: RoutingKey | None = None
    severity_map: SeverityMap = None


class WebhookSettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    url: WebhookUrl


SETTINGS_PATCH: dict[str, type[BaseModel]] = {
    "email": EmailSettingsPatch,
    "slack": SlackSettingsPatch,
    "pagerduty": PagerDutySettingsPatch,
    "webhook": WebhookSettingsPatch,
}


class ContactPointPatch(BaseModel):
    """The fields given replace theirs. ``settings`` is checked against the contact point's kind (which never
    changes) and merged: a secret given (Slack ``url``, PagerDuty ``routing_key``) replaces the stored one.
    ``{"enabled": true}`` re-enables a contact point a receiver disabled (clears ``disabled_reason``)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: Name | None = None
    enabled: bool | None = None
    settings: dict[str, Any] | None = Field(default=None, description="As for the kind at creation; merged")

    _not_null = refuse_null("name", "enabled", "settings")
    _something = require_a_field()


# --- responses ---------------------------------------------------------------------------------------------------


class ContactPoint(BaseModel):
    """A contact point as everyone who may read the project sees it: its settings without the secret."""

    model_config = ConfigDict(defer_build=True)

    id: UUID_T
    project_id: UUID_T
    name: str
    kind: Kind
    settings: dict[str, Any] = Field(
        description="email: addresses; pagerduty: severity_map; webhook: url; slack: {} (the URL is the secret)"
    )
    secret_hint: str | None = Field(
        description="The secret's last 4 characters (Slack URL, routing key, signing secret)"
    )
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why a receiver disabled it (Slack 404/410); null when a person did"
    )
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ContactPointCreated(ContactPoint):
    signing_secret: str | None = Field(
        default=None,
        description="kind webhook: the signing secret (whsec_…) of its messages, shown only in this response",
    )


class ContactPointDeleted(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID_T
    deleted: Literal[True] = True


class ContactPointTestResult(BaseModel):
    model_config = ConfigDict(defer_build=True)
    delivery_id: UUID_T = Field(description="The notification_deliveries row recording the test")
    ok: bool = Field(
        description="The receiver took it (Slack 200, PagerDuty 202, SES accepted, the webhook engine has it)"
    )
    status_code: int | None
    duration_ms: int
    response_excerpt: str | None = Field(description="The start of the receiver's answer")
    error: str | None
    retryable: bool
    disabled_reason: str | None = Field(
        description="Set when the answer disabled the contact point (Slack 404/410: the webhook was removed)"
    )


# --- people's notification settings -------------------------------------------------------------------------------

SlackUserId = Annotated[
    str,
    StringConstraints(pattern=r"^[UW][A-Z0-9]{2,20}$"),
    Field(description="The Slack member id (U… or W…), mentioned when they are paged", examples=["U024BE7LH"]),
]
SlackTeamId = Annotated[
    str,
    StringConstraints(pattern=r"^[TE][A-Z0-9]{2,20}$"),
    Field(
        description="The Slack workspace (team id T…, or an Enterprise Grid's E…) of slack_user_id: set, a Slack button"
        " pressed in another workspace does not act as this member",
        examples=["T0001"],
    ),
]


class NotificationSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    email_enabled: bool = Field(default=True, description="Page by e-mail (their account's address)")
    slack_user_id: SlackUserId | None = None
    slack_team_id: SlackTeamId | None = None
    slack_contact_point_id: UUID_T | None = Field(
        default=None, description="A live slack contact point of one of the organization's projects"
    )


class NotificationSettings(NotificationSettingsIn):
    org_id: UUID_T
    user_id: UUID_T
    updated_at: datetime | None
