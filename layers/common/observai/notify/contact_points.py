"""Contact points as the paging machinery uses them: the live ones a route names, a contact point's channel
configuration with its secret opened, and disabling one a receiver refused for good (Slack 404/410).

The API (create, read, update, delete, test) is in observai.notify.contact_points_api; the SQL in
observai.notify.contact_points_store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from observai.config import Settings
from observai.db.connection import Cursor
from observai.notify import contact_points_store as store
from observai.notify.secrets import open_sealed
from observai.observability import logger


def secret_context(org_id: UUID | str, contact_point_id: UUID | str) -> dict[str, str]:
    """The encryption context a contact point's secret is sealed for: it opens for this contact point only."""
    return {"org_id": str(org_id), "contact_point_id": str(contact_point_id)}


def channel_config(cur: Cursor, contact_point_row: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The configuration ``observai.notify.channels.send`` takes for this contact point, its secret opened:
    ``{"addresses"}`` (email), ``{"url"}`` (slack), ``{"routing_key", "severity_map"}`` (pagerduty),
    ``{"endpoint_id", "org_id", "project_id"}`` (webhook). Read with the service role's cursor (the API roles cannot
    read the sealed column). Raises SecretDoesNotOpen (a ValueError) when the secret does not open."""
    row = dict(contact_point_row)
    kind = row["kind"]
    settings_json = row.get("settings") or {}
    if kind == "email":
        return {"addresses": list(settings_json.get("addresses") or [])}
    if kind == "webhook":
        return {"endpoint_id": row.get("webhook_endpoint_id"), "org_id": row["org_id"], "project_id": row["project_id"]}
    sealed = row.get("secret_sealed")
    if sealed is None:
        sealed = store.sealed_secret(cur, row["id"])
    if sealed is None:
        raise ValueError(f"contact point {row['id']} has no secret")
    secret = open_sealed(bytes(sealed), secret_context(row["org_id"], row["id"]), settings)
    if kind == "slack":
        return {"url": secret}
    if kind == "pagerduty":
        return {"routing_key": secret, "severity_map": dict(settings_json.get("severity_map") or {})}
    raise ValueError(f"unknown contact point kind {kind!r}")


def by_names(cur: Cursor, project_id: UUID, names: Sequence[str]) -> list[dict[str, Any]]:
    """The project's live (not deleted) and enabled contact points with these names, with their sealed secret
    (service role's cursor); a name with none is left out. In the order of ``names``."""
    return store.by_names(cur, project_id, list(dict.fromkeys(names)))


def get_live(cur: Cursor, contact_point_id: UUID) -> dict[str, Any] | None:
    """One contact point, live (not deleted), enabled or not, with its sealed secret (service role's cursor)."""
    return store.get_any(cur, contact_point_id)


def disable(cur: Cursor, contact_point_id: UUID, reason: str, now: datetime) -> bool:
    """Turn the contact point off with ``reason`` (e.g. "Slack answered 410: the webhook was removed"); True only
    for the transaction that turned it off (a second delivery seeing the same 410 changes nothing)."""
    turned_off = store.disable(cur, contact_point_id, reason[:500], now)
    if turned_off:
        logger.warning(
            "contact point disabled by its receiver",
            extra={"contact_point_id": str(contact_point_id), "reason": reason[:500]},
        )
    return turned_off
