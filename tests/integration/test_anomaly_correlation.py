"""Correlation on real rows (observai.anomalies.correlation.correlate, on its own, with anomaly events inserted as
the job leaves them): events overlapping in time and sharing labels across detectors become one group with a human
reason; other services, other times and label-less detectors stay apart; a detector's equality filters count as
attributes; a group closes when all its members closed; running twice changes nothing; the grouping does not depend
on the order the rows were written in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.anomalies.correlation import correlate
from observai.db.connection import transaction

from tests.helpers.anomaly_rows import add_detector, add_event, add_series, close_event
from tests.helpers.ingest import IngestProject, make_project

pytestmark = pytest.mark.integration

T = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)


def run(project: IngestProject, now: datetime) -> int:
    with transaction() as cur:
        return correlate(cur, project.project_id, now)


def groups(db: psycopg.Connection[Any], project: IngestProject) -> list[dict[str, Any]]:
    rows = db.execute(
        "select g.*, array_agg(e.id order by e.started_at, e.id) as members from public.anomaly_groups g"
        " join public.anomaly_events e on e.group_id = g.id where g.project_id = %s"
        " group by g.id order by g.started_at, g.id",
        (project.project_id,),
    ).fetchall()
    return list(rows)


def event_at(
    db: psycopg.Connection[Any],
    project: IngestProject,
    detector: UUID,
    labels: dict[str, Any],
    start: datetime,
    key: str | None = None,
    **kwargs: Any,
) -> UUID:
    series = add_series(db, project, detector, labels, key=key)
    return add_event(db, project, detector, series, labels, start, **kwargs)


def test_anomalies_on_one_service_within_minutes_become_one_group(db: psycopg.Connection) -> None:
    # Given three detectors of service checkout's latency, errors and CPU (series per host), anomalous within four
    # minutes on two hosts, and search's latency anomalous at the same time on another host
    project = make_project(label="Correlate")
    latency = add_detector(db, project, "checkout latency p95", group_by=["service", "host"])
    errors = add_detector(db, project, "checkout errors", metric="http.errors", group_by=["service", "host"])
    cpu = add_detector(db, project, "checkout CPU", metric="cpu", group_by=["service", "host"])
    a = event_at(db, project, latency, {"service": "checkout", "host": "a"}, T)
    b = event_at(db, project, errors, {"service": "checkout", "host": "b"}, T + timedelta(minutes=2))
    c = event_at(db, project, cpu, {"service": "checkout", "host": "a"}, T + timedelta(minutes=4))
    search = event_at(db, project, latency, {"service": "search", "host": "z"}, T + timedelta(minutes=1))

    # When correlated
    changed = run(project, T + timedelta(minutes=5))

    # Then checkout's three anomalies are one open group sharing service=checkout, with a reason saying so, and
    # search's is a group of its own (a lone anomaly is a group of one)
    found = groups(db, project)
    assert changed == 2 and len(found) == 2
    checkout = next(g for g in found if g["shared_labels"] == {"service": "checkout"})
    assert checkout["members"] == [a, b, c]
    assert checkout["status"] == "open" and checkout["ended_at"] is None and checkout["started_at"] == T
    assert checkout["reason"] == (
        "3 anomalies on service=checkout within 4 minutes: checkout latency p95 above, checkout errors above,"
        " checkout CPU above"
    )
    alone = next(g for g in found if g["members"] == [search])
    assert alone["shared_labels"] == {"service": "search", "host": "z"}
    assert alone["reason"] == "1 anomaly on host=z, service=search: checkout latency p95 above"

    # When correlated again with nothing new
    before = [(g["id"], g["updated_at"]) for g in groups(db, project)]
    assert run(project, T + timedelta(minutes=6)) == 0

    # Then nothing changed
    assert [(g["id"], g["updated_at"]) for g in groups(db, project)] == before


def test_a_group_closes_when_all_its_members_closed_and_later_anomalies_start_another(
    db: psycopg.Connection,
) -> None:
    # Given two correlated anomalies on host web-1
    project = make_project(label="Close")
    latency = add_detector(db, project, "latency", group_by=["host"])
    errors = add_detector(db, project, "errors", metric="errors", group_by=["host"])
    a = event_at(db, project, latency, {"host": "web-1"}, T)
    b = event_at(db, project, errors, {"host": "web-1"}, T + timedelta(minutes=1))
    run(project, T + timedelta(minutes=2))

    # When the first closes: the group stays open
    close_event(db, a, T + timedelta(minutes=10))
    assert run(project, T + timedelta(minutes=11)) == 0
    (group,) = groups(db, project)
    assert group["status"] == "open"

    # When the second closes: the group closes at the last member's end
    close_event(db, b, T + timedelta(minutes=20))
    assert run(project, T + timedelta(minutes=21)) == 1
    (group,) = groups(db, project)
    assert (group["status"], group["ended_at"]) == ("closed", T + timedelta(minutes=20))
    assert group["members"] == [a, b]

    # When host web-1 is anomalous again within 5 minutes of the end: it joins (and reopens) the group
    c = event_at(db, project, latency, {"host": "web-1"}, T + timedelta(minutes=24))
    run(project, T + timedelta(minutes=25))
    (group,) = groups(db, project)
    assert group["members"] == [a, b, c] and group["status"] == "open" and group["ended_at"] is None

    # When it is anomalous again an hour later: a new group
    close_event(db, c, T + timedelta(minutes=30))
    d = event_at(db, project, errors, {"host": "web-1"}, T + timedelta(minutes=90))
    run(project, T + timedelta(minutes=91))
    found = groups(db, project)
    assert [g["members"] for g in found] == [[a, b, c], [d]]
    assert [g["status"] for g in found] == ["closed", "open"]


def test_a_detectors_equality_filters_are_attributes_and_label_less_anomalies_stay_apart(
    db: psycopg.Connection,
) -> None:
    # Given a detector of checkout's latency by its filter (no group_by: its series has no labels), one of
    # checkout's errors per host, and a detector of the whole fleet's CPU (no filter, no labels)
    project = make_project(label="Filters")
    latency = add_detector(
        db, project, "checkout latency", filters=[{"attribute": "service", "op": "=", "value": "checkout"}]
    )
    errors = add_detector(db, project, "errors", metric="errors", group_by=["service", "host"])
    fleet = add_detector(db, project, "fleet CPU", metric="cpu")
    a = event_at(db, project, latency, {}, T)
    b = event_at(db, project, errors, {"service": "checkout", "host": "b"}, T + timedelta(minutes=1))
    c = event_at(db, project, fleet, {}, T + timedelta(minutes=1))

    run(project, T + timedelta(minutes=2))

    # Then checkout's latency and errors are one group on service=checkout; the fleet's CPU is alone, unlabelled
    found = groups(db, project)
    assert sorted(([str(m) for m in g["members"]], g["shared_labels"]) for g in found) == sorted(
        [([str(a), str(b)], {"service": "checkout"}), ([str(c)], {})]
    )
    assert next(g for g in found if g["members"] == [c])["reason"] == "1 anomaly: fleet CPU above"


EVENTS = st.lists(
    st.tuples(
        st.integers(0, 40),  # start minute
        st.one_of(st.none(), st.integers(1, 30)),  # duration (None: open)
        st.sampled_from(["checkout", "search", "cart"]),
        st.sampled_from(["a", "b"]),
        st.integers(0, 2),  # detector
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS, order=st.randoms(use_true_random=False))
def test_grouping_is_a_partition_idempotent_and_independent_of_insert_order(
    db: psycopg.Connection, events: list[tuple[int, int | None, str, str, int]], order: Any
) -> None:
    # Given the same anomalies written into two projects, in two orders
    def build(shuffled: list[int]) -> tuple[IngestProject, dict[UUID, int]]:
        project = make_project(label="Prop")
        detectors = [add_detector(db, project, f"d{i}", group_by=["service", "host"]) for i in range(3)]
        ids = {}
        for index in shuffled:
            minute, duration, service, host, detector = events[index]
            start = T + timedelta(minutes=minute)
            end = None if duration is None else start + timedelta(minutes=duration)
            ids[
                event_at(
                    db,
                    project,
                    detectors[detector],
                    {"service": service, "host": host},
                    start,
                    key=f"s{index}",
                    ended_at=end,
                )
            ] = index
        return project, ids

    indexes = list(range(len(events)))
    first, first_ids = build(indexes)
    shuffled = indexes[:]
    order.shuffle(shuffled)
    second, second_ids = build(shuffled)
    now = T + timedelta(minutes=80)

    # When each is correlated (twice)
    run(first, now)
    run(second, now)

    # Then every anomaly is in exactly one group, whose members all hold its shared labels
    def partition(project: IngestProject, ids: dict[UUID, int]) -> set[tuple[Any, ...]]:
        found = groups(db, project)
        members = [m for g in found for m in g["members"]]
        assert sorted(map(str, members)) == sorted(map(str, ids))
        for g in found:
            for m in g["members"]:
                _, _, service, host, _ = events[ids[m]]
                assert g["shared_labels"].items() <= {"service": service, "host": host}.items()
        return {(tuple(sorted(ids[m] for m in g["members"])), g["status"], g["reason"].split(":")[0]) for g in found}

    # And the groups are the same whatever the order the rows were written in
    assert partition(first, first_ids) == partition(second, second_ids)
    assert run(first, now) == 0 and run(second, now) == 0
