"""The writer's bookkeeping statements (usage increments, log volume), written directly rather than through psycopg's
quoting: they insert exactly the rows the statements they replace inserted (kept here as the reference), for any
counts, service names included (quotes, backslashes, any Unicode)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.db.connection import transaction
from observai.db.literals import uuid_literal
from observai.logs.volume import level_of, volume_statement
from observai.telemetry.model import Signal
from observai.telemetry.usage import usage_statement
from psycopg import sql

from tests.helpers.ingest import make_project

pytestmark = pytest.mark.integration

# The statements as they were (observai.logs.volume and observai.telemetry.usage before they were written directly).
REFERENCE_VOLUME = sql.SQL("""
insert into public.log_volume (org_id, project_id, minute, service, level, retention_days, count)
select {org}, {project}, timestamptz '2000-01-01 00:00:00+00' + v.m * interval '1 minute', v.service,
       least((v.sev + 3) / 4, 6), v.r, sum(v.n)
from unnest({minutes}::bigint[], {services}::text[], {severities}::smallint[], {retention}::smallint[],
            {counts}::bigint[]) as v (m, service, sev, r, n)
group by v.m, v.service, least((v.sev + 3) / 4, 6), v.r
""")
REFERENCE_USAGE = sql.SQL("""
insert into public.usage_increments (org_id, project_id, day, signal, events, bytes)
select {org}, {project}, (now() at time zone 'UTC')::date, t.signal, t.events, t.bytes
from unnest({signals}::text[], {events}::bigint[], {bytes}::bigint[]) as t (signal, events, bytes)
""")


def reference_volume(org: uuid.UUID, project: uuid.UUID, counts: dict[Any, int]) -> sql.Composed:
    keys = list(counts)
    return REFERENCE_VOLUME.format(
        org=sql.Literal(org),
        project=sql.Literal(project),
        minutes=sql.Literal([k[0] for k in keys]),
        services=sql.Literal([k[1] for k in keys]),
        severities=sql.Literal([k[2] for k in keys]),
        retention=sql.Literal([k[3] for k in keys]),
        counts=sql.Literal(list(counts.values())),
    )


def reference_usage(org: uuid.UUID, project: uuid.UUID, per_signal: dict[Signal, tuple[int, int]]) -> sql.Composed:
    rows = [(s.value, e, b) for s, (e, b) in per_signal.items() if e or b]
    return REFERENCE_USAGE.format(
        org=sql.Literal(org),
        project=sql.Literal(project),
        signals=sql.Literal([r[0] for r in rows]),
        events=sql.Literal([r[1] for r in rows]),
        bytes=sql.Literal([r[2] for r in rows]),
    )


def inserted(statement: sql.Composable, table: str, columns: str, project: uuid.UUID) -> list[tuple[Any, ...]]:
    """The rows ``statement`` inserts for ``project`` (rolled back: nothing stays)."""
    found: list[tuple[Any, ...]] = []
    with contextlib.suppress(_RollBack), transaction() as cur:
        cur.execute(statement)
        cur.execute(f"select {columns} from public.{table} where project_id = %s", (project,))
        found = sorted((tuple(r.values()) for r in cur.fetchall()), key=repr)
        raise _RollBack
    return found


class _RollBack(Exception):
    """Raised to leave a transaction rolled back."""


@pytest.fixture(scope="module")
def owner(database_url: str) -> Any:
    return make_project(label="Bookkeeping")


services = (
    st.none()
    | st.sampled_from(["checkout", "it's", "back\\slash", "\\'", "E'x'", "ünïcødé ✓", ""])
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
)
volume_keys = st.tuples(
    st.integers(0, 20_000_000), services, st.integers(0, 24), st.sampled_from([1, 3, 7, 14, 30, 90, 400])
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(counts=st.dictionaries(volume_keys, st.integers(1, 10**12), min_size=1, max_size=30))
def test_the_volume_statement_inserts_the_references_rows(owner: Any, counts: dict[Any, int]) -> None:
    # Given any log volume of one request; When it is recorded by the statement and by the reference
    columns = "minute, service, level, retention_days, count"
    ours = inserted(volume_statement(owner.org_id, owner.project_id, counts), "log_volume", columns, owner.project_id)
    theirs = inserted(reference_volume(owner.org_id, owner.project_id, counts), "log_volume", columns, owner.project_id)
    # Then the rows are the same, one per (minute, service, level, retention_days)
    assert ours == theirs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    per_signal=st.dictionaries(st.sampled_from(list(Signal)), st.tuples(st.integers(0, 10**15), st.integers(0, 10**15)))
)
def test_the_usage_statement_inserts_the_references_rows(owner: Any, per_signal: dict[Signal, Any]) -> None:
    statement = usage_statement(owner.org_id, owner.project_id, per_signal)
    if statement is None:  # nothing counted: no statement (the reference would insert no row either)
        assert not any(e or b for e, b in per_signal.values())
        return
    columns = "org_id, day, signal, events, bytes"
    ours = inserted(statement, "usage_increments", columns, owner.project_id)
    theirs = inserted(reference_usage(owner.org_id, owner.project_id, per_signal), "usage_increments", columns,
                      owner.project_id)  # fmt: skip
    assert ours == theirs


@pytest.mark.parametrize("severity", range(-8, 30))
def test_level_of_is_sqls_expression(database_url: str, severity: int) -> None:
    with transaction() as cur:
        cur.execute("select least((%s::smallint + 3) / 4, 6) as level", (severity,))
        assert level_of(severity) == cur.fetchone()["level"]


@pytest.mark.parametrize("value", ["7b0c2a4e-0000-4000-8000-000000000000", "x'; drop table t; --", 1, None])
def test_only_uuids_are_written_as_uuid_literals(value: Any) -> None:
    with pytest.raises(TypeError):
        uuid_literal(value)
    assert uuid_literal(uuid.UUID(int=5)) == "'00000000-0000-0000-0000-000000000005'::uuid"
