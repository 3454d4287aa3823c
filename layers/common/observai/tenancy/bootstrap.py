"""Bootstrap: the first organization and its owner, created with the service role (no caller yet).

    python -m observai.tenancy.bootstrap --org-name "Acme" --owner-email owner@acme.example

The owner is found in auth.users by e-mail; if absent, created through Supabase Auth's admin API
when SUPABASE_URL and the service role key are set, else (local development) inserted directly.
Running it again with the same org name and owner changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from uuid import UUID

from observai import audit
from observai.auth.permissions import Role
from observai.config import get_settings
from observai.db.connection import Cursor, transaction
from observai.tenancy import store
from observai.tenancy.api_keys import insert_key
from observai.tenancy.orgs import insert_org_with_unique_slug
from observai.tenancy.projects import insert_project_with_unique_slug
from observai.tenancy.slugs import slugify

DEMO_EMAIL = "dev@observai.local"


@dataclass(frozen=True)
class Bootstrapped:
    org_id: UUID
    owner_user_id: UUID
    created: bool


@dataclass(frozen=True)
class DemoWorkspace:
    org_id: UUID
    project_id: UUID
    user_id: UUID
    email: str
    api_key: str


def ensure_user(cur: Cursor, email: str) -> UUID:
    user_id = store.user_id_by_email(cur, email)
    if user_id is not None:
        return user_id
    settings = get_settings()
    if settings.supabase_url and settings.supabase_service_role_key:
        from observai.auth.supabase_admin import create_user

        return create_user(email, settings=settings).id
    cur.execute("insert into auth.users (email) values (%s) returning id", (email,))
    row = cur.fetchone()
    assert row is not None
    return row["id"]


def bootstrap_organization(org_name: str, owner_email: str) -> Bootstrapped:
    with transaction() as cur:
        owner = ensure_user(cur, owner_email.strip().lower())
        cur.execute(
            "select o.id from public.organizations o join public.memberships m on m.org_id = o.id"
            " where o.slug = %s and m.user_id = %s and m.role = 'owner'",
            (slugify(org_name), owner),
        )
        existing = cur.fetchone()
        if existing:
            return Bootstrapped(org_id=existing["id"], owner_user_id=owner, created=False)
        org = insert_org_with_unique_slug(cur, org_name, None)
        store.insert_membership(cur, org["id"], owner, Role.OWNER)
        audit.record(
            cur,
            None,
            "org.bootstrap",
            org_id=org["id"],
            target_type="organization",
            target_id=org["id"],
            details={"owner_user_id": str(owner)},
        )
    return Bootstrapped(org_id=org["id"], owner_user_id=owner, created=True)


def create_demo_workspace(org_name: str = "Demo", email: str = DEMO_EMAIL) -> DemoWorkspace:
    """`make dev`'s first run: an organization, a project and an ingest+read API key for the demo user."""
    boot = bootstrap_organization(org_name, email)
    with transaction() as cur:
        cur.execute("select id from public.projects where org_id = %s and slug = 'demo'", (boot.org_id,))
        found = cur.fetchone()
        if found:
            project_id = found["id"]
        else:
            project_id = insert_project_with_unique_slug(cur, boot.org_id, "Demo project", "demo")["id"]
        key = insert_key(
            cur,
            org_id=boot.org_id,
            project_id=project_id,
            name="demo key",
            scopes=["ingest", "read"],
            expires_at=None,
            created_by=boot.owner_user_id,
        )
        audit.record(cur, None, "api_key.create", org_id=boot.org_id, target_type="api_key", target_id=key.id)
    return DemoWorkspace(
        org_id=boot.org_id, project_id=project_id, user_id=boot.owner_user_id, email=email, api_key=key.key
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--org-name", required=True)
    parser.add_argument("--owner-email", required=True)
    args = parser.parse_args(argv)
    result = bootstrap_organization(args.org_name, args.owner_email)
    print(json.dumps(asdict(result), default=str, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
