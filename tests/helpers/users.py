"""Users for tests: a row in auth.users (as Supabase Auth would have) and a development JWT for it."""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from observai.auth.jwt import issue_dev_token


class User(NamedTuple):
    """Unpacks as (user_id, email, jwt)."""

    id: UUID
    email: str
    jwt: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}


def unique_email(label: str = "user") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}@example.test"


def make_user(db: psycopg.Connection[Any], email: str | None = None, **token_claims: Any) -> User:
    """Insert a user into auth.users and issue a token for them (signed with the configured dev secret)."""
    email = email or unique_email()
    row = db.execute("insert into auth.users (email) values (%s) returning id", (email,)).fetchone()
    assert row is not None
    user_id = row["id"] if isinstance(row, dict) else row[0]
    return User(id=user_id, email=email, jwt=issue_dev_token(user_id, email, **token_claims))


def add_membership(db: psycopg.Connection[Any], org_id: UUID | str, user_id: UUID | str, role: str) -> None:
    """Arrange a membership directly (bypassing the API), for tests that only need the state."""
    db.execute("insert into public.memberships (org_id, user_id, role) values (%s, %s, %s)", (org_id, user_id, role))
