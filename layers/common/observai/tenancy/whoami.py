"""Who the caller is, for both kinds of credential."""

from __future__ import annotations

from observai.auth.principal import Principal
from observai.db.connection import tenant_transaction
from observai.tenancy import store
from observai.tenancy.models import OrgMembership, WhoAmI


def whoami(principal: Principal) -> WhoAmI:
    memberships: list[OrgMembership] = []
    if principal.kind == "user" and principal.user_id is not None:
        with tenant_transaction(principal.rls_claims()) as cur:
            memberships = [OrgMembership(**row) for row in store.memberships_of_user(cur, principal.user_id)]
    return WhoAmI(
        kind=principal.kind,
        user_id=principal.user_id,
        email=principal.email,
        key_id=principal.key_id,
        org_id=principal.org_id,
        project_id=principal.project_id,
        scopes=sorted(principal.scopes),
        memberships=memberships,
    )
