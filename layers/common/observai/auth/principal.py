"""Who is calling: a person (Supabase JWT), a program (API key) or a signed action link that names no person (the
link is bound to one project and incident: observai.notify.links), and from where."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["user", "api_key", "link"]
    user_id: UUID | None = None
    email: str | None = None
    key_id: UUID | None = None
    org_id: UUID | None = None  # API keys and links are bound to one org and project
    project_id: UUID | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    source_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    @property
    def uid(self) -> UUID:
        """The user id of a person; routes that call this only admit user tokens."""
        if self.user_id is None:
            raise TypeError("not a user principal")
        return self.user_id

    @property
    def actor_type(self) -> str:
        return self.kind

    @property
    def actor_id(self) -> str | None:
        """The user or API key id; None for a link (it names nobody)."""
        if self.kind == "link":
            return None
        return str(self.user_id if self.kind == "user" else self.key_id)

    @property
    def rate_limit_key(self) -> str:
        if self.kind == "link":
            return f"link:{self.project_id}"
        return f"user:{self.user_id}" if self.kind == "user" else f"key:{self.key_id}"

    def rls_claims(self) -> dict[str, Any]:
        """The JWT claims set for the transaction so Row Level Security sees this caller, as PostgREST would."""
        if self.kind == "user":
            return {"sub": str(self.user_id), "role": "authenticated", "aud": "authenticated", "email": self.email}
        if self.kind == "link":  # a link reads nothing through Row Level Security (its routes use the service role)
            return {"role": "authenticated"}
        return {
            "role": "authenticated",
            "api_key": {
                "id": str(self.key_id),
                "org_id": str(self.org_id),
                "project_id": str(self.project_id),
                "scopes": sorted(self.scopes),
            },
        }
