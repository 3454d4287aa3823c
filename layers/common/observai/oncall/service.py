"""On-call schedules over the API: CRUD, overrides, who is on call, the final timeline, and a person's next shifts.

Who may do what:

* write (create, patch, delete a schedule; add or delete an override): admins and owners of the organization
  (``Action.SCHEDULE_MANAGE``), audited;
* read: every member of the organization (viewers too).

Schedules belong to an organization and are for people: API keys (bound to one project) get 403. A caller who is
not a member gets 404 (the organization's existence is not revealed). Everyone named in a layer or an override must
be a member of the organization (422 at the field). Deleting a schedule is a soft delete: escalation policies may
still name it, and ``observai.oncall.resolve.on_call`` answers None (nobody) for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import ConfigDict, TypeAdapter

from observai import audit
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict, Forbidden, NotFound, invalid_field
from observai.observability import logger
from observai.oncall import store
from observai.oncall.models import (
    MAX_SCHEDULES_PER_ORG,
    MyOnCall,
    MyOnCallShift,
    Schedule,
    ScheduleIn,
    ScheduleLayer,
    ScheduleOnCall,
    ScheduleOverride,
    ScheduleOverrideIn,
    SchedulePatch,
    ScheduleShift,
    ScheduleShifts,
)
from observai.oncall.timeline import OverrideSpan, Shift, timeline
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_org

MAX_SHIFTS_RANGE = timedelta(days=90)
ONCALL_WINDOW = timedelta(days=35)  # /oncall: the shift holding ``at`` is reported within ±35 days of it
MY_ONCALL_DEFAULT_DAYS = 30
MAX_FUTURE_OVERRIDES = 1000  # per schedule, not yet over

_LAYERS = TypeAdapter(list[ScheduleLayer], config=ConfigDict(defer_build=True))  # built at first use, as the models


# --- rows -----------------------------------------------------------------------------------------------------------


def layers_of(row: Mapping[str, Any]) -> list[ScheduleLayer]:
    """A stored schedule's layers (validated when written; read back as the models)."""
    return _LAYERS.validate_python(row["layers"])


def spans_of(rows: Iterable[Mapping[str, Any]]) -> list[OverrideSpan]:
    return [OverrideSpan(r["user_id"], r["start_at"], r["end_at"]) for r in rows]


def to_schedule(row: Mapping[str, Any]) -> Schedule:
    return Schedule(
        id=row["id"],
        org_id=row["org_id"],
        name=row["name"],
        description=row["description"],
        time_zone=row["time_zone"],
        layers=layers_of(row),
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def to_override(row: Mapping[str, Any]) -> ScheduleOverride:
    return ScheduleOverride(
        id=row["id"],
        schedule_id=row["schedule_id"],
        user_id=row["user_id"],
        start=row["start_at"],
        end=row["end_at"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


def to_shift(shift: Shift) -> ScheduleShift:
    return ScheduleShift(
        user_id=shift.user_id,
        start=shift.start,
        end=shift.end,
        source=shift.source,
        layer=shift.layer,
        layer_index=shift.layer_index,
    )


def _layers_json(layers: list[ScheduleLayer]) -> list[dict[str, Any]]:
    return [layer.model_dump(mode="json") for layer in layers]


def _not_found(schedule_id: UUID) -> NotFound:
    return NotFound("Schedule not found", details={"schedule_id": str(schedule_id)})


def _person(principal: Principal) -> UUID:
    """The caller's user id: schedules are for people, API keys get 403."""
    if principal.kind != "user" or principal.user_id is None:
        raise Forbidden(
            "On-call schedules need a person's token: API keys are bound to one project",
            code="user_token_required",
        )
    return principal.user_id


def _authorize(cur: Cursor, principal: Principal, org_id: UUID, action: Action) -> UUID:
    user_id = _person(principal)
    authorize_org(cur, principal, org_id, action)
    return user_id


def _check_members(cur: Cursor, org_id: UUID, layers: list[ScheduleLayer]) -> None:
    """422 at the first layer user who is not a member of the organization."""
    outsiders = store.non_members(cur, org_id, [u for layer in layers for u in layer.users])
    for i, layer in enumerate(layers):
        for j, user in enumerate(layer.users):
            if user in outsiders:
                raise invalid_field(
                    ["body", "layers", i, "users", j], "not_a_member", f"{user} is not a member of the organization"
                )


def _get_live(cur: Cursor, org_id: UUID, schedule_id: UUID, *, for_update: bool = False) -> dict[str, Any]:
    row = store.get(cur, schedule_id, org_id, for_update=for_update)
    if row is None:
        raise _not_found(schedule_id)
    return row


def absent_people(cur: Cursor, org_id: UUID, layers: list[ScheduleLayer], overrides: list[OverrideSpan]) -> set[UUID]:
    """Those named in the layers or overrides who are no longer members of the organization (they left or were
    removed after being put on call): the timeline counts their turns as nobody's."""
    named = {u for layer in layers for u in layer.users} | {o.user_id for o in overrides}
    return store.non_members(cur, org_id, list(named))


def computed(cur: Cursor, row: Mapping[str, Any], start: datetime, end: datetime) -> list[Shift]:
    """The schedule's final timeline over [start, end), read with ``cur`` (the caller's claims or the service
    role)."""
    layers = layers_of(row)
    overrides = spans_of(store.overrides_between(cur, row["id"], start, end))
    absent = absent_people(cur, row["org_id"], layers, overrides)
    return timeline(layers, row["time_zone"], overrides, start, end, absent)


# --- schedules ------------------------------------------------------------------------------------------------------


def create_schedule(principal: Principal, org_id: UUID, body: ScheduleIn, now: datetime | None = None) -> Schedule:
    now = now or datetime.now(UTC)
    with transaction() as cur:
        user_id = _authorize(cur, principal, org_id, Action.SCHEDULE_MANAGE)
        _check_members(cur, org_id, body.layers)
        store.lock_org(cur, org_id)
        count = store.count_live(cur, org_id)
        if count >= MAX_SCHEDULES_PER_ORG:
            raise Conflict(
                f"This organization has {count} on-call schedules, the most it may have; delete one first",
                code="schedule_limit_reached",
                details={"schedules": count, "limit": MAX_SCHEDULES_PER_ORG},
            )
        row = store.insert(
            cur,
            org_id=org_id,
            name=body.name,
            description=body.description,
            time_zone=body.time_zone,
            layers=_layers_json(body.layers),
            created_by=user_id,
            now=now,
        )
        audit.record(
            cur,
            principal,
            "schedule.create",
            org_id=org_id,
            target_type="oncall_schedule",
            target_id=row["id"],
            details={"name": body.name, "time_zone": body.time_zone, "layers": len(body.layers)},
        )
    logger.info("on-call schedule created", extra={"schedule_id": str(row["id"]), "org_id": str(org_id)})
    return to_schedule(row)


def update_schedule(
    principal: Principal, org_id: UUID, schedule_id: UUID, body: SchedulePatch, now: datetime | None = None
) -> Schedule:
    now = now or datetime.now(UTC)
    given = body.model_dump(exclude_unset=True, mode="json")
    with transaction() as cur:
        _authorize(cur, principal, org_id, Action.SCHEDULE_MANAGE)
        row = _get_live(cur, org_id, schedule_id, for_update=True)
        if body.layers is not None and "layers" in body.model_fields_set:
            _check_members(cur, org_id, body.layers)
        changes = {key: value for key, value in given.items() if row[key] != value}
        if not changes:
            return to_schedule(row)
        updated = store.update(cur, schedule_id, changes, now)
        audit.record(
            cur,
            principal,
            "schedule.update",
            org_id=org_id,
            target_type="oncall_schedule",
            target_id=schedule_id,
            details={"changed": sorted(changes)},
        )
    logger.info("on-call schedule updated", extra={"schedule_id": str(schedule_id), "changed": sorted(changes)})
    return to_schedule(updated)


def delete_schedule(principal: Principal, org_id: UUID, schedule_id: UUID, now: datetime | None = None) -> UUID:
    now = now or datetime.now(UTC)
    with transaction() as cur:
        _authorize(cur, principal, org_id, Action.SCHEDULE_MANAGE)
        row = _get_live(cur, org_id, schedule_id, for_update=True)
        store.soft_delete(cur, schedule_id, now)
        audit.record(
            cur,
            principal,
            "schedule.delete",
            org_id=org_id,
            target_type="oncall_schedule",
            target_id=schedule_id,
            details={"name": row["name"]},
        )
    logger.info("on-call schedule deleted", extra={"schedule_id": str(schedule_id)})
    return schedule_id


def get_schedule(principal: Principal, org_id: UUID, schedule_id: UUID) -> Schedule:
    with tenant_transaction(principal.rls_claims()) as cur:
        _authorize(cur, principal, org_id, Action.ORG_READ)
        return to_schedule(_get_live(cur, org_id, schedule_id))


def list_schedules(
    principal: Principal, org_id: UUID, cursor: str | None, limit: int
) -> tuple[list[Schedule], str | None]:
    """The organization's schedules, newest first."""
    after = decode_cursor(cursor, TimeCursor)
    position = time_cursor_params(after)
    with tenant_transaction(principal.rls_claims()) as cur:
        _authorize(cur, principal, org_id, Action.ORG_READ)
        rows = store.list_page(cur, org_id, position["after_ts"], position["after_id"], limit + 1)
    rows, next_cursor = page(rows, limit, time_position())
    return [to_schedule(row) for row in rows], next_cursor


# --- overrides ------------------------------------------------------------------------------------------------------


def create_override(
    principal: Principal, org_id: UUID, schedule_id: UUID, body: ScheduleOverrideIn, now: datetime | None = None
) -> ScheduleOverride:
    now = now or datetime.now(UTC)
    with transaction() as cur:
        user_id = _authorize(cur, principal, org_id, Action.SCHEDULE_MANAGE)
        _get_live(cur, org_id, schedule_id, for_update=True)
        if store.non_members(cur, org_id, [body.user_id]):
            raise invalid_field(
                ["body", "user_id"], "not_a_member", f"{body.user_id} is not a member of the organization"
            )
        pending = store.count_overrides_ending_after(cur, schedule_id, now)
        if pending >= MAX_FUTURE_OVERRIDES:
            raise Conflict(
                f"This schedule has {pending} overrides not yet over, the most it may have; delete one first",
                code="override_limit_reached",
                details={"overrides": pending, "limit": MAX_FUTURE_OVERRIDES},
            )
        row = store.insert_override(
            cur,
            org_id=org_id,
            schedule_id=schedule_id,
            user_id=body.user_id,
            start=body.start,
            end=body.end,
            created_by=user_id,
            now=now,
        )
        audit.record(
            cur,
            principal,
            "schedule.override.create",
            org_id=org_id,
            target_type="oncall_override",
            target_id=row["id"],
            details={
                "schedule_id": str(schedule_id),
                "user_id": str(body.user_id),
                "start": body.start.isoformat(),
                "end": body.end.isoformat(),
            },
        )
    logger.info("on-call override created", extra={"schedule_id": str(schedule_id), "override_id": str(row["id"])})
    return to_override(row)


def delete_override(principal: Principal, org_id: UUID, schedule_id: UUID, override_id: UUID) -> UUID:
    with transaction() as cur:
        _authorize(cur, principal, org_id, Action.SCHEDULE_MANAGE)
        _get_live(cur, org_id, schedule_id, for_update=True)
        row = store.get_override(cur, schedule_id, override_id)
        if row is None:
            raise NotFound("ScheduleOverride not found", details={"override_id": str(override_id)})
        store.delete_override(cur, override_id)
        audit.record(
            cur,
            principal,
            "schedule.override.delete",
            org_id=org_id,
            target_type="oncall_override",
            target_id=override_id,
            details={
                "schedule_id": str(schedule_id),
                "user_id": str(row["user_id"]),
                "start": row["start_at"].isoformat(),
                "end": row["end_at"].isoformat(),
            },
        )
    logger.info("on-call override deleted", extra={"schedule_id": str(schedule_id), "override_id": str(override_id)})
    return override_id


def list_overrides(
    principal: Principal,
    org_id: UUID,
    schedule_id: UUID,
    start: datetime | None,
    end: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[ScheduleOverride], str | None]:
    """The schedule's overrides reaching into [start, end) (either side open when not given), by start."""
    if start is not None and end is not None and end <= start:
        raise invalid_field(["query", "to"], "range", "`to` must be after `from`")
    after = decode_cursor(cursor, TimeCursor)
    position = time_cursor_params(after)
    with tenant_transaction(principal.rls_claims()) as cur:
        _authorize(cur, principal, org_id, Action.ORG_READ)
        _get_live(cur, org_id, schedule_id)
        rows = store.overrides_page(cur, schedule_id, start, end, position["after_ts"], position["after_id"], limit + 1)
    rows, next_cursor = page(rows, limit, time_position("start_at"))
    return [to_override(row) for row in rows], next_cursor


# --- timelines ------------------------------------------------------------------------------------------------------


def shifts(
    principal: Principal, org_id: UUID, schedule_id: UUID, start: datetime | None, end: datetime | None
) -> ScheduleShifts:
    """The final timeline over [start, end): at most 90 days (default: the next 7 days from now)."""
    start = (start or datetime.now(UTC)).astimezone(UTC)
    end = (end or start + timedelta(days=7)).astimezone(UTC)
    if end <= start:
        raise invalid_field(["query", "to"], "range", "`to` must be after `from`")
    if end - start > MAX_SHIFTS_RANGE:
        raise invalid_field(
            ["query", "to"],
            "range",
            f"A request covers at most {MAX_SHIFTS_RANGE.days} days; ask for the rest in another request",
        )
    with tenant_transaction(principal.rls_claims()) as cur:
        _authorize(cur, principal, org_id, Action.ORG_READ)
        row = _get_live(cur, org_id, schedule_id)
        found = computed(cur, row, start, end)
    return ScheduleShifts(schedule_id=schedule_id, start=start, end=end, shifts=[to_shift(s) for s in found])


def on_call_at(principal: Principal, org_id: UUID, schedule_id: UUID, at: datetime | None) -> ScheduleOnCall:
    """Who is on call at ``at`` (default now), with their shift (within ±35 days of ``at``)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    with tenant_transaction(principal.rls_claims()) as cur:
        _authorize(cur, principal, org_id, Action.ORG_READ)
        row = _get_live(cur, org_id, schedule_id)
        found = computed(cur, row, at - ONCALL_WINDOW, at + ONCALL_WINDOW)
    shift = next((s for s in found if s.start <= at < s.end), None)
    if shift is None:
        return ScheduleOnCall(schedule_id=schedule_id, at=at, on_call=False, user_id=None)
    with transaction() as cur:
        email = store.emails(cur, org_id, [shift.user_id]).get(shift.user_id)
    return ScheduleOnCall(
        schedule_id=schedule_id,
        at=at,
        on_call=True,
        user_id=shift.user_id,
        email=email,
        shift_start=shift.start,
        shift_end=shift.end,
        source=shift.source,
        layer=shift.layer,
    )


def my_oncall(principal: Principal, days: int = MY_ONCALL_DEFAULT_DAYS, now: datetime | None = None) -> MyOnCall:
    """The caller's shifts over the next ``days`` days on every schedule of their organizations, and whether they
    are on call now (a person's token only)."""
    user_id = _person(principal)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    end = now + timedelta(days=days)
    mine: list[MyOnCallShift] = []
    with transaction() as cur:
        for row in store.with_member(cur, user_id):
            for shift in computed(cur, row, now, end):
                if shift.user_id == user_id:
                    mine.append(
                        MyOnCallShift(
                            **to_shift(shift).model_dump(),
                            org_id=row["org_id"],
                            schedule_id=row["id"],
                            schedule_name=row["name"],
                        )
                    )
    mine.sort(key=lambda s: (s.start, str(s.schedule_id)))
    return MyOnCall(on_call_now=any(s.start <= now < s.end for s in mine), start=now, end=end, shifts=mine)
