"""Request and response models of the tenancy API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from observai.auth.permissions import Role

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$"

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Slug = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=SLUG_PATTERN)]


def _email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 254 or not re.match(EMAIL_PATTERN, value):
        raise ValueError("not a valid e-mail address")
    return value


Email = Annotated[str, AfterValidator(_email)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class OrgCreate(_In):
    name: Name
    slug: Slug | None = Field(default=None, description="Derived from the name when absent")


class OrgUpdate(_In):
    name: Name | None = None
    slug: Slug | None = None
    plan: Annotated[str, StringConstraints(pattern=r"^(free|pro|enterprise)$")] | None = Field(
        default=None, description="Owners only"
    )


class ProjectCreate(_In):
    name: Name
    slug: Slug | None = None


class ProjectUpdate(_In):
    name: Name | None = None
    slug: Slug | None = None


class MemberAdd(_In):
    user_id: UUID
    role: Role


class MemberUpdate(_In):
    role: Role


class InvitationCreate(_In):
    email: Email
    role: Role = Role.MEMBER


class Org(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    name: str
    slug: str
    plan: str
    role: Role | None = Field(default=None, description="The caller's role in this organization")
    created_at: datetime
    updated_at: datetime


class Project(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    org_id: UUID
    name: str
    slug: str
    created_at: datetime
    updated_at: datetime


class Member(BaseModel):
    model_config = ConfigDict(defer_build=True)
    user_id: UUID
    email: str | None = None
    role: Role
    created_at: datetime


class Invitation(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    org_id: UUID
    email: str
    role: Role
    user_id: UUID | None
    created_at: datetime


class Deleted(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    deleted: bool = True


class AuditEntry(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: int
    org_id: UUID | None
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]
    source_ip: str | None
    user_agent: str | None
    request_id: str | None
    created_at: datetime


class OrgMembership(BaseModel):
    model_config = ConfigDict(defer_build=True)
    org_id: UUID
    role: Role


class WhoAmI(BaseModel):
    model_config = ConfigDict(defer_build=True)
    kind: str = Field(description="user or api_key")
    user_id: UUID | None = None
    email: str | None = None
    key_id: UUID | None = None
    org_id: UUID | None = None
    project_id: UUID | None = None
    scopes: list[str] = Field(default_factory=list)
    memberships: list[OrgMembership] = Field(default_factory=list, description="For users: every organization")
