"""Similar past incidents: every resolved incident's embedding (pgvector), and its nearest neighbours.

* ``incident_text``: what an incident is embedded from: its title, its latest summary (when one was generated),
  its alert rule names, services, most frequent error messages in its window, and the resolution note a person
  wrote. Redacted (``observai.ai.redaction.redact_for_model``) and bounded: it leaves for the model.
* ``embed_incident``: the AI worker's ``embedding`` task. Unchanged text (the same sha256 digest, model and
  dimension) is not embedded again; else one metered model call, upserted into ``incident_embeddings``.
* ``nearest``: the nearest resolved incidents of the same organization by cosine distance (HNSW index of the
  configured dimension). An incident without an embedding yet (still open, or resolved moments ago) is
  embedded on the fly (metered, not stored) when the organization opted in and the model is available.
* ``similar_incidents``: the API (viewers and ``read`` keys), read as the caller: Row Level Security hides
  other organizations' incidents and embeddings whatever the query says.

No model call is made inside a database transaction held by this module (the idle-in-transaction timeout is
shorter than a model call may take); ``nearest`` runs in its caller's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from observai.ai import similar_store as store
from observai.ai.model import AiUnavailable
from observai.ai.redaction import redact_for_model
from observai.ai.similar_models import SimilarIncident
from observai.auth.principal import Principal
from observai.config import Settings, get_settings
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import NotFound, ObservAIError
from observai.observability import logger
from observai.tenancy.access import authorize_telemetry

MAX_TEXT = 6_000  # characters embedded (a few thousand tokens at most)
MAX_PART = 1_500  # characters of the summary, of the resolution note
TOP_ERRORS = 5
ERROR_WIDTH = 300
WINDOW_BEFORE = timedelta(minutes=15)  # error lines are looked for from this long before the incident triggered
MAX_WINDOW = timedelta(hours=24)  # error lines from its first day: what it started with
MAX_NAMES = 10
SUMMARY_WAIT_S = 60  # an embedding due while the incident's summary task is pending waits this long, again
MAX_SUMMARY_WAIT = timedelta(hours=1)


def _bounded(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary_text(answer: Any) -> list[str]:
    """The prose of a summary answer (summary, probable cause, impact, next steps), without its citations."""
    out: list[str] = []

    def walk(value: Any, key: str | None) -> None:
        if key in ("citations", "cites", "ids"):
            return
        if isinstance(value, str):
            if value.strip():
                out.append(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for item in value:
                walk(item, key)

    walk(answer, None)
    return out


def _unique(values: list[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if value and value.strip():
            seen.setdefault(value.strip(), None)
    return list(seen)[:MAX_NAMES]


def incident_text(cur: Cursor, incident_id: UUID) -> str:
    """The redacted, bounded text an incident is embedded from ("" for an unknown incident)."""
    incident = store.incident(cur, incident_id)
    if incident is None:
        return ""
    return _text_of(cur, incident)


def _text_of(cur: Cursor, incident: Mapping[str, Any]) -> str:
    alerts = store.alert_rules_and_services(cur, incident["id"])
    rules = _unique([a["rule_name"] for a in alerts])
    services = _unique([incident["service"], *(a["service"] for a in alerts)])
    start = incident["triggered_at"] - WINDOW_BEFORE
    end = min(incident["resolved_at"] or datetime.now(UTC), incident["triggered_at"] + MAX_WINDOW)
    errors = store.top_error_messages(
        cur, incident["project_id"], services, start, end + timedelta(seconds=1), top=TOP_ERRORS, width=ERROR_WIDTH
    )
    summary = store.latest_summary(cur, incident["id"])
    parts = [f"Incident: {_bounded(incident['title'], 500)}"]
    if rules:
        parts.append("Alert rules: " + ", ".join(_bounded(r, 200) for r in rules))
    if services:
        parts.append("Services: " + ", ".join(_bounded(s, 200) for s in services))
    if summary:
        parts.append("Summary: " + _bounded(" ".join(_summary_text(summary)), MAX_PART))
    if errors:
        parts.append("Top error messages:")
        parts.extend(f"- {_bounded(row['message'], ERROR_WIDTH)}" for row in errors)
    if incident["resolution_note"]:
        parts.append("Resolution note: " + _bounded(incident["resolution_note"], MAX_PART))
    return redact_for_model("\n".join(parts))[:MAX_TEXT]


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- embedding ---------------------------------------------------------------------------------------------------


def _embed_metered(text: str, *, org_id: UUID, project_id: UUID | None, settings: Settings) -> tuple[list[float], str]:
    """One embedding call, metered (ok or failed); (vector, model). Raises AiUnavailable (also for a vector of the
    wrong dimension or with non-finite values: an answer we cannot store is no answer)."""
    from observai.ai import metering
    from observai.ai.provider import language_model

    model = language_model(settings)
    try:
        embeddings = model.embed([text])
    except AiUnavailable:
        metering.record(
            org_id, project_id, "embedding", model=settings.ai_embedding_model, input_tokens=0, output_tokens=0,
            outcome="failed",
        )  # fmt: skip
        raise
    vector = embeddings.vectors[0] if embeddings.vectors else []
    ok = store.valid_vector(vector, settings.ai_embedding_dimensions)
    metering.record(
        org_id, project_id, "embedding", model=embeddings.model or settings.ai_embedding_model,
        input_tokens=embeddings.input_tokens, output_tokens=0, outcome="ok" if ok else "invalid",
    )  # fmt: skip
    if not ok:
        raise AiUnavailable("invalid_embedding")
    return [float(x) for x in vector], embeddings.model or settings.ai_embedding_model


def embed_incident(task: Mapping[str, Any], now: datetime) -> None:
    """The AI worker's ``embedding`` handler: (re-)embed a resolved incident when its text changed.

    Nothing is sent when the incident is gone or not resolved, its organization has not opted in, or the
    deployment has no key; nothing is embedded again when the text's digest, the model and the dimension are those
    stored. A pending summary moves the task a minute later; a spent budget, to when the month's budget resets.
    Raises AiUnavailable when the model failed: the worker retries later."""
    from observai.ai import access, metering, tasks
    from observai.ai.provider import is_configured

    settings = get_settings()
    if not is_configured(settings):
        return
    with transaction() as cur:
        incident = store.incident(cur, task["incident_id"])
        if incident is None or incident["status"] != "resolved" or not access.is_enabled(cur, incident["org_id"]):
            return
        later = None
        if store.summary_pending(cur, incident["id"], now - MAX_SUMMARY_WAIT):
            # After its summary (part of the text). A summary that never comes is waited for MAX_SUMMARY_WAIT at most.
            later = SUMMARY_WAIT_S
        else:
            text = _text_of(cur, incident)
            digest = digest_of(text)
            state = store.embedding_state(cur, incident["id"])
            if state is not None and (state["source_digest"], state["model"], state["dimensions"]) == (
                digest,
                settings.ai_embedding_model,
                settings.ai_embedding_dimensions,
            ):
                return
            try:
                metering.check_budget(cur, incident["org_id"], now)
            except metering.AiBudgetExhausted as exc:
                later = exc.retry_after_s
        if later is not None:
            # The worker keeps a task enqueued again while it ran: this one is due again then.
            tasks.enqueue(
                cur, org_id=incident["org_id"], project_id=incident["project_id"], incident_id=incident["id"],
                kind="embedding", reason=str(task.get("reason") or "resolved"), now=now, delay_s=later,
            )  # fmt: skip
            return
    vector, model = _embed_metered(
        text, org_id=incident["org_id"], project_id=incident["project_id"], settings=settings
    )
    with transaction() as cur:
        current = store.incident(cur, incident["id"])
        if current is None or current["updated_at"] != incident["updated_at"]:
            return  # changed meanwhile (a new note): the task its change enqueued embeds the new text
        store.upsert_embedding(cur, incident=incident, model=model, vector=vector, digest=digest, now=now)
    logger.info("incident embedded", extra={"incident_id": str(incident["id"]), "dimensions": len(vector)})


def on_resolution_note_changed(cur: Cursor, incident: Mapping[str, Any], now: datetime) -> None:
    """In the transaction that changed a resolved incident's note: its embedding is made again (organizations that
    opted in; the task sends nothing when the text ends up unchanged)."""
    from observai.ai import access, tasks

    if access.is_enabled(cur, incident["org_id"]):
        tasks.enqueue(
            cur, org_id=incident["org_id"], project_id=incident["project_id"], incident_id=incident["id"],
            kind="embedding", reason="note_changed", now=now,
        )  # fmt: skip


# --- nearest -----------------------------------------------------------------------------------------------------


def _query_vector(cur: Cursor, incident: Mapping[str, Any], settings: Settings, now: datetime) -> str | None:
    """The incident's stored embedding, else one made now from its current text (metered, not stored); None when
    none can be made (not opted in, no model, budget spent, the model failed)."""
    from observai.ai import access, metering

    stored = store.stored_vector(
        cur, incident["id"], model=settings.ai_embedding_model, dimensions=settings.ai_embedding_dimensions
    )
    if stored is not None:
        return stored
    if not access.is_enabled(cur, incident["org_id"]):
        return None
    try:
        metering.check_budget(cur, incident["org_id"], now)
        text = _text_of(cur, incident)
        vector, _ = _embed_metered(
            text, org_id=incident["org_id"], project_id=incident["project_id"], settings=settings
        )
    except (AiUnavailable, ObservAIError) as exc:
        logger.info("no embedding for similar incidents", extra={"incident_id": str(incident["id"]), "error": str(exc)})
        return None
    return store.vector_text(vector)


def _any_other(cur: Cursor, incident: Mapping[str, Any], settings: Settings) -> bool:
    return store.any_other(
        cur,
        org_id=incident["org_id"],
        incident_id=incident["id"],
        model=settings.ai_embedding_model,
        dimensions=settings.ai_embedding_dimensions,
    )


def _similar(rows: list[dict[str, Any]]) -> list[SimilarIncident]:
    return [
        SimilarIncident(
            incident_id=row["incident_id"],
            project_id=row["project_id"],
            number=row["number"],
            title=row["title"],
            resolved_at=row["resolved_at"],
            resolution_note=row["resolution_note"],
            similarity=round(min(1.0, max(0.0, 1.0 - float(row["distance"]))), 6),
        )
        for row in rows
    ]


def nearest(
    cur: Cursor, org_id: UUID, incident_id: UUID, *, limit: int = 5, settings: Settings, now: datetime | None = None
) -> list[SimilarIncident]:
    """The nearest resolved incidents of organization ``org_id`` to ``incident_id`` (never itself), nearest first,
    with their resolution notes and a similarity in [0, 1]. Read in ``cur`` (the service's or a tenant's: with a
    tenant's, Row Level Security also applies). An incident without an embedding is embedded on the fly (metered)
    when the organization opted in and the model is available; otherwise, or when the model fails, the list is
    empty: never an error (the summaries' context calls this). Mind that the on-the-fly call happens inside
    ``cur``'s transaction."""
    incident = store.incident(cur, incident_id)
    if incident is None or incident["org_id"] != org_id or not _any_other(cur, incident, settings):
        return []
    vector = _query_vector(cur, incident, settings, now or datetime.now(UTC))
    if vector is None:
        return []
    return _nearest(cur, org_id, incident_id, vector, limit, settings)


def similar_incidents(
    principal: Principal, project_id: UUID, incident_id: UUID, limit: int, *, now: datetime | None = None
) -> list[SimilarIncident]:
    """The API: the incident's nearest past incidents, read as the caller (viewers and up, ``read`` keys).

    409 ``ai_disabled`` when the organization has not opted in; 503 ``ai_not_configured`` (or the model's
    unavailability) and 429 ``ai_budget_exhausted`` only when the incident has no embedding yet and one must be
    made. The model is called between two transactions, never inside one."""
    from observai.ai import access

    settings = get_settings()
    now = now or datetime.now(UTC)
    text: str | None = None
    with tenant_transaction(principal.rls_claims()) as cur:
        org_id = authorize_telemetry(cur, principal, project_id)
        incident = store.incident(cur, incident_id, project_id)
        if incident is None:
            raise NotFound("Incident not found", details={"incident_id": str(incident_id)})
        if not access.is_enabled(cur, org_id):
            access.require_enabled(cur, org_id, settings)  # raises: ai_not_configured without a key, else ai_disabled
        vector = store.stored_vector(
            cur, incident_id, model=settings.ai_embedding_model, dimensions=settings.ai_embedding_dimensions
        )
        if vector is None:
            access.require_configured(settings)  # opted in (above): ai_not_configured without a key
            if not _any_other(cur, incident, settings):
                return []  # nothing to compare with: no embedding call
            from observai.ai import metering

            metering.check_budget(cur, org_id, now)
            text = _text_of(cur, incident)
    if vector is None:
        assert text is not None
        try:
            made, _ = _embed_metered(text, org_id=org_id, project_id=project_id, settings=settings)
        except AiUnavailable as exc:
            raise access.unavailable_error(exc) from exc
        vector = store.vector_text(made)
    with tenant_transaction(principal.rls_claims()) as cur:
        return _nearest(cur, org_id, incident_id, vector, limit, settings)


def _nearest(
    cur: Cursor, org_id: UUID, incident_id: UUID, vector: str, limit: int, settings: Settings
) -> list[SimilarIncident]:
    """The nearest past incidents to ``vector`` in the embedding space of the settings' model and dimension."""
    rows = store.nearest(
        cur,
        org_id=org_id,
        incident_id=incident_id,
        query_vector=vector,
        dimensions=settings.ai_embedding_dimensions,
        model=settings.ai_embedding_model,
        limit=limit,
    )
    return _similar(rows)
