"""The organization's AI settings: read (members) and the opt-in (owners and admins, audited).

Light on purpose (OrgsFunction imports it): no SDK, no adapter; ``available`` is whether a key is configured.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from observai import audit
from observai.ai import metering
from observai.ai.provider import is_configured
from observai.ai.settings_models import AiFeatureUsage, AiSettings, AiSettingsUpdate, AiUsage
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.config import get_settings
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.tenancy.access import authorize_org

_GET = "select enabled, updated_at, updated_by from public.org_ai_settings where org_id = %s"

_UPSERT = """
insert into public.org_ai_settings as s (org_id, enabled, updated_by, updated_at)
values (%(org)s, %(enabled)s, %(by)s, %(now)s)
on conflict (org_id) do update set enabled = excluded.enabled, updated_by = excluded.updated_by,
    updated_at = excluded.updated_at
returning enabled, updated_at, updated_by
"""

# This month's calls per feature (members read ai_usage through its policy).
_MONTH_BY_FEATURE = """
select feature, count(*)::bigint as calls, count(*) filter (where outcome = 'failed')::bigint as failed_calls,
       coalesce(sum(input_tokens), 0)::bigint as input_tokens, coalesce(sum(output_tokens), 0)::bigint as output_tokens
from public.ai_usage
where org_id = %s and at >= %s and at < %s
group by feature order by feature
"""


def _settings_of(cur: Cursor, org_id: UUID, row: dict[str, Any] | None, now: datetime) -> AiSettings:
    settings = get_settings()
    budget = metering.month_budget(cur, org_id, now)
    return AiSettings(
        org_id=org_id,
        enabled=bool(row and row["enabled"]),
        available=is_configured(settings),
        generation_model=settings.ai_generation_model,
        embedding_model=settings.ai_embedding_model,
        embedding_dimensions=settings.ai_embedding_dimensions,
        plan=budget.plan,
        monthly_token_budget=budget.monthly_tokens,
        tokens_used_this_month=budget.used_tokens,
        month_start=budget.month_start,
        resets_at=budget.resets_at,
        updated_at=row["updated_at"] if row else None,
        updated_by=row["updated_by"] if row else None,
    )


def get_ai_settings(principal: Principal, org_id: UUID, *, now: datetime | None = None) -> AiSettings:
    now = now or datetime.now(UTC)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_org(cur, principal, org_id, Action.ORG_READ)
        cur.execute(_GET, (org_id,))
        return _settings_of(cur, org_id, cur.fetchone(), now)


def update_ai_settings(
    principal: Principal, org_id: UUID, body: AiSettingsUpdate, *, now: datetime | None = None
) -> AiSettings:
    """Turn the AI features on or off for the organization (owners and admins); audited ``org.ai.update`` with the
    previous and the new value (only when it changed)."""
    now = now or datetime.now(UTC)
    with transaction() as cur:
        authorize_org(cur, principal, org_id, Action.ORG_UPDATE)
        cur.execute(_GET + " for update", (org_id,))
        before = cur.fetchone()
        previous = bool(before and before["enabled"])
        row: dict[str, Any] | None = before
        if before is None or previous != body.enabled:
            cur.execute(_UPSERT, {"org": org_id, "enabled": body.enabled, "by": principal.user_id, "now": now})
            row = cur.fetchone()
            audit.record(
                cur,
                principal,
                "org.ai.update",
                org_id=org_id,
                target_type="organization",
                target_id=org_id,
                details={"enabled": body.enabled, "previous": previous},
            )
        return _settings_of(cur, org_id, row, now)


def month_usage(cur: Cursor, org_id: UUID, now: datetime) -> AiUsage:
    """This month's AI usage of the organization, per feature, against its plan's budget (the usage report)."""
    budget = metering.month_budget(cur, org_id, now)
    cur.execute(_MONTH_BY_FEATURE, (org_id, budget.month_start, budget.resets_at))
    features = [AiFeatureUsage(**r) for r in cur.fetchall()]
    input_tokens = sum(f.input_tokens for f in features)
    output_tokens = sum(f.output_tokens for f in features)
    return AiUsage(
        month_start=budget.month_start,
        resets_at=budget.resets_at,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        monthly_token_budget=budget.monthly_tokens,
        remaining_tokens=budget.remaining,
        features=features,
    )
