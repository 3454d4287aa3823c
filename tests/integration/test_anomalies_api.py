"""The anomaly detectors API in-process (AnomaliesFunction's handler, real Postgres): detector CRUD audited, who
may write and read, validation (422 naming the field, settings included), the per-project limit, baselines reset by
a new query, settings or interval; bands, series, anomaly events and correlated groups as the job and the
correlation leave them; and tenant isolation on every route (another organization: 404, never data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from observai.anomalies.correlation import correlate
from observai.anomalies.sweep import sweep
from observai.db.connection import transaction
from psycopg.types.json import Jsonb

from tests.helpers.anomaly_rows import add_detector, add_event, add_points, add_series
from tests.helpers.ingest import IngestProject, add_key, iso, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration

T = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
QUERY = {
    "name": "http.latency",
    "filters": [{"attribute": "service", "op": "=", "value": "checkout"}],
    "aggregation": "p95",
    "group_by": ["host"],
}


@dataclass
class Tenant:
    project: IngestProject  # an ingest key
    reader: IngestProject  # a read key of the same project
    admin_key: IngestProject  # an admin key of the same project
    owner: User
    member: User
    viewer: User

    @property
    def base(self) -> str:
        return f"/v1/projects/{self.project.project_id}"

    @property
    def path(self) -> str:
        return f"{self.base}/anomaly-detectors"


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    project = make_project(scopes=("ingest",), label="Anomalies")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        users = {}
        for role in ("owner", "member", "viewer"):
            users[role] = make_user(db)
            add_membership(db, project.org_id, users[role].id, role)
    return Tenant(
        project,
        add_key(project, ("read",)),
        add_key(project, ("admin",)),
        users["owner"],
        users["member"],
        users["viewer"],
    )


@pytest.fixture(scope="module")
def stranger(database_url: str) -> tuple[User, IngestProject]:
    """Another organization: its owner and its project's read and admin key."""
    other = make_project(scopes=("read", "admin"), label="Stranger")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
    return owner, other


def call(method: str, path: str, headers: dict[str, str], body: Any = None, query: str = "") -> Result:
    return invoke("anomalies", method, path, headers=headers, json_body=body, query=query)


def create(tenant: Tenant, headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"name": "checkout latency", "query": QUERY, **fields}
    response = call("POST", tenant.path, headers or tenant.member.headers, body)
    assert response.status == 201, response.text
    return dict(response.data)


def rows(db: psycopg.Connection[Any], query: str, *params: Any) -> list[dict[str, Any]]:
    return list(db.execute(query, params).fetchall())


# --- detectors ---------------------------------------------------------------------------------------------------


def test_crud_round_trip_audited(tenant: Tenant, db: psycopg.Connection) -> None:
    # Given a member of the project
    # When they create a detector of checkout's p95 latency per host, every 5 minutes, robust, above only
    created = create(
        tenant,
        description="  p95 per host ",
        interval_s=300,
        settings={"algorithm": "robust", "window": 120, "direction": "above"},
    )

    # Then it is saved as sent, the settings completed with their defaults, not yet scored
    assert created["name"] == "checkout latency" and created["description"] == "p95 per host"
    assert created["query"] == QUERY and created["interval_s"] == 300 and created["enabled"] is True
    settings = created["settings"]
    assert (settings["algorithm"], settings["window"], settings["direction"]) == ("robust", 120, "above")
    assert settings["deviations"] == 3.0 and settings["warmup"] == 120
    assert created["processed_until"] is None and (created["series"], created["anomalous_series"]) == (0, 0)
    path = f"{tenant.path}/{created['id']}"

    # And a viewer and a read key read it, alone and in the list
    for headers in (tenant.viewer.headers, tenant.reader.headers):
        got = call("GET", path, headers)
        assert got.status == 200, got.text
        assert got.data == created
        assert created["id"] in [d["id"] for d in call("GET", tenant.path, headers).data]

    # When the member renames and disables it
    patched = call("PATCH", path, tenant.member.headers, {"name": "Checkout p95", "enabled": False})
    assert patched.status == 200, patched.text
    assert (patched.data["name"], patched.data["enabled"]) == ("Checkout p95", False)
    assert patched.data["settings"] == settings  # left out: kept

    # When an admin key deletes it
    deleted = call("DELETE", path, tenant.admin_key.headers)
    assert deleted.status == 200, deleted.text
    assert deleted.data == {"id": created["id"], "deleted": True}

    # Then it is gone from every read and cannot be changed or deleted again; the row stays, soft-deleted
    assert call("GET", path, tenant.viewer.headers).status == 404
    assert created["id"] not in [d["id"] for d in call("GET", tenant.path, tenant.viewer.headers).data]
    assert call("PATCH", path, tenant.member.headers, {"enabled": True}).status == 404
    assert call("DELETE", path, tenant.member.headers).status == 404
    (row,) = rows(db, "select deleted_at, enabled from public.anomaly_detectors where id = %s", created["id"])
    assert row["deleted_at"] is not None and row["enabled"] is False

    # And every write is audited, by whom
    audit = rows(
        db, "select action, actor_id, details from public.audit_log where target_id = %s order by id", created["id"]
    )
    assert [a["action"] for a in audit] == [
        "anomaly_detector.create",
        "anomaly_detector.update",
        "anomaly_detector.delete",
    ]
    assert audit[0]["actor_id"] == audit[1]["actor_id"] == str(tenant.member.id)
    assert audit[2]["actor_id"] == str(tenant.admin_key.key_id)
    assert audit[1]["details"]["changed"] == ["enabled", "name"]


def test_list_is_paginated_newest_first(tenant: Tenant) -> None:
    project = make_project(scopes=("admin", "read"), label="Paged")
    path = f"/v1/projects/{project.project_id}/anomaly-detectors"
    ids = []
    for i in range(3):
        response = call("POST", path, project.headers, {"name": f"d{i}", "query": {"name": "cpu"}})
        assert response.status == 201, response.text
        ids.append(response.data["id"])

    first = call("GET", path, project.headers, query="limit=2")
    cursor = first.json()["meta"]["next_cursor"]
    second = call("GET", path, project.headers, query=f"limit=2&cursor={cursor}")

    assert [d["id"] for d in first.data + second.data] == list(reversed(ids))
    assert cursor and second.json()["meta"]["next_cursor"] is None


def test_viewers_and_read_keys_read_but_cannot_write(tenant: Tenant) -> None:
    detector = create(tenant)
    path = f"{tenant.path}/{detector['id']}"
    body = {"name": "x", "query": {"name": "cpu"}}
    for headers in (tenant.viewer.headers, tenant.reader.headers):
        assert call("POST", tenant.path, headers, body).status == 403
        assert call("PATCH", path, headers, {"name": "y"}).status == 403
        assert call("DELETE", path, headers).status == 403
        assert call("GET", path, headers).status == 200
    # An ingest key neither reads nor writes
    assert call("GET", tenant.path, tenant.project.headers).status == 403
    assert call("POST", tenant.path, tenant.project.headers, body).status == 403
    # The owner and an admin key write
    assert call("PATCH", path, tenant.owner.headers, {"description": "by the owner"}).status == 200
    assert call("PATCH", path, tenant.admin_key.headers, {"description": "by a key"}).status == 200


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "d", "query": {"name": "cpu", "group_by": ["host"]}}
    for key, value in changes.items():
        if key.startswith("query_"):
            body["query"][key.removeprefix("query_")] = value
        else:
            body[key] = value
    return body


INVALID: dict[str, tuple[dict[str, Any], list[Any]]] = {
    "a window too short": (_body(settings={"window": 5}), ["body", "settings", "window"]),
    "an unknown setting": (_body(settings={"windw": 60}), ["body", "settings", "windw"]),
    "an unknown algorithm": (_body(settings={"algorithm": "prophet"}), ["body", "settings", "algorithm"]),
    "a sensitivity as text": (_body(settings={"deviations": "3"}), ["body", "settings", "deviations"]),
    "an interval under a minute": (_body(interval_s=30), ["body", "interval_s"]),
    "an interval not whole minutes": (_body(interval_s=90), ["body", "interval_s"]),
    "an interval over a day": (_body(interval_s=172800), ["body", "interval_s"]),
    "no metric name": (_body(query_name=""), ["body", "query", "name"]),
    "an unknown aggregation": (_body(query_aggregation="median"), ["body", "query", "aggregation"]),
    "a repeated group_by key": (_body(query_group_by=["host", "host"]), ["body", "query", "group_by"]),
    "an in filter with one value": (
        _body(query_filters=[{"attribute": "host", "op": "in", "value": "a"}]),
        ["body", "query", "filters", 0, "value"],
    ),
    "a regex Postgres refuses": (
        _body(query_filters=[{"attribute": "host", "op": "=~", "value": "(?P<n>web)"}]),
        ["body", "query", "filters", 0, "value"],
    ),
    "an unknown field": (_body(owner="me"), ["body", "owner"]),
    "no name": (_body(name="   "), ["body", "name"]),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_detectors_are_refused_naming_the_field(tenant: Tenant, case: str) -> None:
    body, loc = INVALID[case]
    response = call("POST", tenant.path, tenant.member.headers, body)
    assert response.status == 422, response.text
    locs = [detail["loc"] for detail in response.error["details"]]
    assert any(got[: len(loc)] == [str(part) for part in loc] or got[: len(loc)] == loc for got in locs), locs


def test_patch_validates_and_refuses_null_and_empty_bodies(tenant: Tenant) -> None:
    path = f"{tenant.path}/{create(tenant)['id']}"
    bad = call("PATCH", path, tenant.member.headers, {"settings": {"window": 99999}})
    assert bad.status == 422 and bad.error["details"][0]["loc"][:3] == ["body", "settings", "window"]
    assert call("PATCH", path, tenant.member.headers, {"name": None}).status == 422
    assert call("PATCH", path, tenant.member.headers, {}).status == 422


def test_at_most_200_detectors_per_project(db: psycopg.Connection) -> None:
    project = make_project(scopes=("admin", "read"), label="Full")
    db.execute(
        "insert into public.anomaly_detectors (org_id, project_id, name, query, interval_s, settings)"
        " select %s, %s, 'd' || i, %s, 60, '{}' from generate_series(1, 200) i",
        (project.org_id, project.project_id, Jsonb({"name": "cpu"})),
    )
    path = f"/v1/projects/{project.project_id}/anomaly-detectors"
    response = call("POST", path, project.headers, {"name": "one more", "query": {"name": "cpu"}})
    assert response.status == 409, response.text
    assert response.error["code"] == "detector_limit_reached" and response.error["details"]["limit"] == 200


def test_a_new_query_settings_or_interval_resets_the_baselines(tenant: Tenant, db: psycopg.Connection) -> None:
    # Given a detector the job has scored: a cursor, a series with its state and points, an open anomaly
    detector = create(tenant)
    did = UUID(detector["id"])
    path = f"{tenant.path}/{did}"

    def scored() -> tuple[int, UUID]:
        db.execute("update public.anomaly_detectors set processed_until = %s where id = %s", (T, did))
        sid = add_series(db, tenant.project, did, {"host": "a"}, anomalous=True)
        db.execute("update public.anomaly_series set state = '{\"v\": 1}', last_time = %s where id = %s", (T, sid))
        sweep(datetime.now(UTC), project_ids=[tenant.project.project_id])  # the dropped points of a reset go
        add_points(db, tenant.project, did, sid, T - timedelta(minutes=10), [10.0] * 9 + [40.0])
        return sid, add_event(db, tenant.project, did, sid, {"host": "a"}, T)

    def state() -> dict[str, Any]:
        (d,) = rows(db, "select processed_until from public.anomaly_detectors where id = %s", did)
        series = rows(
            db, "select id, state, anomalous, algorithm from public.anomaly_series where detector_id = %s", did
        )
        # the points the reads show: the detector's current generation (older ones wait for the job's sweep)
        points = rows(
            db,
            "select count(*) as n from public.anomaly_points p join public.anomaly_detectors d on d.id = p.detector_id"
            " where p.detector_id = %s and p.generation = d.generation",
            did,
        )[0]["n"]
        events = rows(db, "select status from public.anomaly_events where detector_id = %s", did)
        return {
            "cursor": d["processed_until"],
            "series": series,
            "points": points,
            "events": [e["status"] for e in events],
        }

    sid, _ = scored()

    # When only the name changes: nothing is reset
    assert call("PATCH", path, tenant.member.headers, {"name": "renamed"}).status == 200
    assert state()["cursor"] == T and state()["points"] == 10 and state()["events"] == ["open"]

    # When the settings change: the series stays with its baseline forgotten, its points dropped (invisible at once,
    # deleted by the job's sweep), its anomaly closed (kept), and the cursor back to null (the job backfills and
    # re-warms as for a new detector)
    response = call("PATCH", path, tenant.member.headers, {"settings": {"algorithm": "zscore"}})
    assert response.status == 200, response.text
    after = state()
    assert after["cursor"] is None and after["points"] == 0 and after["events"] == ["closed"]
    assert [(s["id"], s["state"], s["anomalous"], s["algorithm"]) for s in after["series"]] == [
        (sid, None, False, None)
    ]

    # When the interval changes: the same
    scored()
    assert call("PATCH", path, tenant.member.headers, {"interval_s": 120}).status == 200
    after = state()
    assert after["cursor"] is None and after["points"] == 0 and after["events"] == ["closed", "closed"]

    # When the query changes: its series (other series now) go, with their points and anomalies
    scored()
    new_query = {**QUERY, "group_by": ["host", "region"]}
    response = call("PATCH", path, tenant.member.headers, {"query": new_query})
    assert response.status == 200 and response.data["query"] == new_query
    after = state()
    assert after == {"cursor": None, "series": [], "points": 0, "events": []}
    audit = rows(
        db,
        "select details from public.audit_log where target_id = %s and action = %s order by id",
        str(did),
        "anomaly_detector.update",
    )
    assert audit[-1]["details"]["dropped_series"] == 1 and audit[1]["details"]["reset_series"] == 1


# --- bands and series ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored(tenant: Tenant, database_url: str) -> dict[str, Any]:
    """A detector with two series (hosts a and b) scored for 30 minutes, b anomalous at the end."""
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        did = add_detector(db, tenant.project, "bands", group_by=["host"])
        a = add_series(db, tenant.project, did, {"host": "a"})
        b = add_series(
            db,
            tenant.project,
            did,
            {"host": "b"},
            anomalous=True,
            algorithm="zscore",
            reason="auto: zscore (steady history)",
        )
        add_points(db, tenant.project, did, a, T, [10.0 + (i % 3) * 0.5 for i in range(30)])
        add_points(db, tenant.project, did, b, T, [10.0] * 27 + [30.0, 31.0, 32.0])
    return {"id": did, "a": a, "b": b, "path": f"{tenant.path}/{did}"}


def test_bands_per_step_for_one_series_by_id_or_labels(tenant: Tenant, scored: dict[str, Any]) -> None:
    window = f"from={iso(T)}&to={iso(T + timedelta(minutes=30))}"
    by_id = call("GET", f"{scored['path']}/bands", tenant.viewer.headers, query=f"{window}&series={scored['b']}")
    assert by_id.status == 200, by_id.text
    (series,) = by_id.data
    assert series["series_id"] == scored["b"] and series["labels"] == {"host": "b"}
    points = series["points"]
    assert len(points) == 30 and points[0]["time"].startswith(iso(T)[:16])
    assert points[0] == {
        "time": points[0]["time"],
        "actual": 10.0,
        "expected": 10.0,
        "lower": 8.0,
        "upper": 12.0,
        "score": 0.0,
        "is_anomaly": False,
        "provisional": False,
    }
    assert [p["is_anomaly"] for p in points[-3:]] == [True, True, True] and points[-1]["actual"] == 32.0

    by_labels = call("GET", f"{scored['path']}/bands", tenant.reader.headers, query=f"{window}&series=host=b")
    assert by_labels.status == 200 and by_labels.data == by_id.data

    # A narrower range reads only its steps; no series given: every series of the detector
    narrow = f"from={iso(T + timedelta(minutes=10))}&to={iso(T + timedelta(minutes=15))}"
    every = call("GET", f"{scored['path']}/bands", tenant.viewer.headers, query=narrow)
    assert [(s["series_id"], len(s["points"])) for s in every.data] == [(scored["a"], 5), (scored["b"], 5)]


def test_bands_refuse_too_many_steps_bad_selectors_and_unknown_series(tenant: Tenant, scored: dict[str, Any]) -> None:
    bands = f"{scored['path']}/bands"
    # 6,000 steps of a minute for two series: 12,000 > 10,000
    long = call("GET", bands, tenant.viewer.headers, query=f"from={iso(T - timedelta(minutes=6000))}&to={iso(T)}")
    assert long.status == 422, long.text
    (detail,) = long.error["details"]
    assert detail["type"] == "too_many_steps" and "10000" in detail["message"]
    # ... but one series of them is fine
    one = call(
        "GET",
        bands,
        tenant.viewer.headers,
        query=f"from={iso(T - timedelta(minutes=6000))}&to={iso(T)}&series={scored['a']}",
    )
    assert one.status == 200 and one.data[0]["points"] == []
    bad = call("GET", bands, tenant.viewer.headers, query="series=host")
    assert bad.status == 422 and bad.error["details"][0]["loc"] == ["query", "series"]
    backwards = call("GET", bands, tenant.viewer.headers, query=f"from={iso(T)}&to={iso(T - timedelta(hours=1))}")
    assert backwards.status == 422
    assert call("GET", bands, tenant.viewer.headers, query="series=999999999").status == 404
    assert call("GET", bands, tenant.viewer.headers, query="from=1700000000").status == 422


def test_series_list_with_algorithm_reason_and_anomalous(tenant: Tenant, scored: dict[str, Any]) -> None:
    listed = call("GET", f"{scored['path']}/series", tenant.reader.headers, query="limit=1")
    assert listed.status == 200, listed.text
    cursor = listed.json()["meta"]["next_cursor"]
    rest = call("GET", f"{scored['path']}/series", tenant.reader.headers, query=f"limit=1&cursor={cursor}")
    a, b = listed.data + rest.data
    assert (a["id"], a["labels"], a["anomalous"]) == (scored["a"], {"host": "a"}, False)
    assert (b["algorithm"], b["algorithm_reason"], b["anomalous"]) == ("zscore", "auto: zscore (steady history)", True)
    anomalous = call("GET", f"{scored['path']}/series", tenant.reader.headers, query="anomalous=true")
    assert [s["id"] for s in anomalous.data] == [scored["b"]]
    detector = call("GET", scored["path"], tenant.reader.headers).data
    assert (detector["series"], detector["anomalous_series"]) == (2, 1)


# --- anomalies and groups -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anomalies(tenant: Tenant, database_url: str) -> dict[str, Any]:
    """In a project of its own: two detectors, three anomaly events (two open on service checkout, correlated; one
    closed earlier), correlated."""
    project = make_project(scopes=("read",), label="Events")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        latency = add_detector(db, project, "latency", group_by=["service", "host"])
        errors = add_detector(db, project, "errors", metric="errors", group_by=["service", "host"])
        s1 = add_series(db, project, latency, {"service": "checkout", "host": "a"})
        s2 = add_series(db, project, errors, {"service": "checkout", "host": "b"})
        s3 = add_series(db, project, latency, {"service": "search", "host": "c"})
        old = add_event(
            db,
            project,
            latency,
            s3,
            {"service": "search", "host": "c"},
            T - timedelta(hours=1),
            ended_at=T - timedelta(minutes=50),
            peak_score=0.6,
            direction="below",
        )
        first = add_event(db, project, latency, s1, {"service": "checkout", "host": "a"}, T, peak_score=0.95)
        second = add_event(db, project, errors, s2, {"service": "checkout", "host": "b"}, T + timedelta(minutes=3))
    with transaction() as cur:
        correlate(cur, project.project_id, T + timedelta(minutes=5))
    return {
        "project": project,
        "latency": latency,
        "errors": errors,
        "old": old,
        "first": first,
        "second": second,
        "base": f"/v1/projects/{project.project_id}",
    }


def test_anomalies_newest_first_filtered_and_paginated(anomalies: dict[str, Any]) -> None:
    headers, base = anomalies["project"].headers, anomalies["base"]
    every = call("GET", f"{base}/anomalies", headers)
    assert every.status == 200, every.text
    assert [e["id"] for e in every.data] == [str(anomalies[k]) for k in ("second", "first", "old")]
    first = every.data[1]
    assert first["labels"] == {"service": "checkout", "host": "a"} and first["status"] == "open"
    assert (first["peak_score"], first["actual_at_peak"], first["expected_at_peak"]) == (0.95, 30.0, 10.0)
    assert first["detector_name"] == "latency" and first["metric"] == "http.latency" and first["group_id"]

    page1 = call("GET", f"{base}/anomalies", headers, query="limit=2")
    cursor = page1.json()["meta"]["next_cursor"]
    page2 = call("GET", f"{base}/anomalies", headers, query=f"limit=2&cursor={cursor}")
    assert [e["id"] for e in page1.data + page2.data] == [e["id"] for e in every.data]

    def ids(query: str) -> list[str]:
        response = call("GET", f"{base}/anomalies", headers, query=query)
        assert response.status == 200, response.text
        return [e["id"] for e in response.data]

    assert ids("status=closed") == [str(anomalies["old"])]
    assert ids(f"detector_id={anomalies['errors']}") == [str(anomalies["second"])]
    assert ids(f"from={iso(T - timedelta(minutes=55))}&to={iso(T + timedelta(minutes=1))}") == [
        str(anomalies["first"]),
        str(anomalies["old"]),
    ]
    one = call("GET", f"{base}/anomalies/{anomalies['first']}", headers)
    assert one.status == 200 and one.data == first
    assert call("GET", f"{base}/anomalies", headers, query="status=gone").status == 422


def test_groups_with_members_and_reason(anomalies: dict[str, Any]) -> None:
    headers, base = anomalies["project"].headers, anomalies["base"]
    listed = call("GET", f"{base}/anomaly-groups", headers)
    assert listed.status == 200, listed.text
    checkout, search = listed.data
    assert checkout["status"] == "open" and checkout["shared_labels"] == {"service": "checkout"}
    assert [m["id"] for m in checkout["members"]] == [str(anomalies["first"]), str(anomalies["second"])]
    assert checkout["reason"] == "2 anomalies on service=checkout within 3 minutes: latency above, errors above"
    assert checkout["peak_score"] == 0.95
    assert search["status"] == "closed" and [m["id"] for m in search["members"]] == [str(anomalies["old"])]
    got = call("GET", f"{base}/anomaly-groups/{checkout['id']}", headers)
    assert got.status == 200 and got.data == checkout
    closed = call("GET", f"{base}/anomaly-groups", headers, query="status=closed")
    assert [g["id"] for g in closed.data] == [search["id"]]


# --- tenant isolation ------------------------------------------------------------------------------------------------


def test_another_organization_gets_404_on_every_route(
    tenant: Tenant, scored: dict[str, Any], anomalies: dict[str, Any], stranger: tuple[User, IngestProject]
) -> None:
    owner, other = stranger
    detector = create(tenant)
    group_id = call("GET", f"{anomalies['base']}/anomaly-groups", anomalies["project"].headers).data[0]["id"]
    theirs = [
        ("POST", tenant.path, {"name": "x", "query": {"name": "cpu"}}),
        ("GET", tenant.path, None),
        ("GET", f"{tenant.path}/{detector['id']}", None),
        ("PATCH", f"{tenant.path}/{detector['id']}", {"name": "mine"}),
        ("DELETE", f"{tenant.path}/{detector['id']}", None),
        ("GET", f"{scored['path']}/bands", None),
        ("GET", f"{scored['path']}/series", None),
        ("GET", f"{anomalies['base']}/anomalies", None),
        ("GET", f"{anomalies['base']}/anomalies/{anomalies['first']}", None),
        ("GET", f"{anomalies['base']}/anomaly-groups", None),
        ("GET", f"{anomalies['base']}/anomaly-groups/{group_id}", None),
    ]
    for method, path, body in theirs:
        for headers in (owner.headers, other.headers):
            response = call(method, path, headers, body)
            assert response.status == 404, (method, path, response.text)
            assert "checkout" not in response.text

    # Their own project's paths with our ids: 404 too (the id alone never reveals another tenant's rows)
    mine = f"/v1/projects/{other.project_id}"
    ours = [
        ("GET", f"{mine}/anomaly-detectors/{detector['id']}", None),
        ("PATCH", f"{mine}/anomaly-detectors/{detector['id']}", {"name": "mine"}),
        ("DELETE", f"{mine}/anomaly-detectors/{detector['id']}", None),
        ("GET", f"{mine}/anomaly-detectors/{scored['id']}/bands", None),
        ("GET", f"{mine}/anomaly-detectors/{scored['id']}/series", None),
        ("GET", f"{mine}/anomalies/{anomalies['first']}", None),
        ("GET", f"{mine}/anomaly-groups/{group_id}", None),
    ]
    for method, path, body in ours:
        response = call(method, path, owner.headers, body)
        assert response.status == 404, (method, path, response.text)
    assert call("GET", f"{mine}/anomalies", owner.headers).data == []
    assert call("GET", f"{mine}/anomaly-groups", owner.headers).data == []
    assert call("GET", f"{tenant.path}/{detector['id']}", tenant.viewer.headers).data["name"] == "checkout latency"
    assert call("GET", f"{mine}/anomaly-detectors/{uuid4()}", owner.headers).status == 404


def test_disabling_deleting_or_requerying_a_detector_ends_its_anomalies_and_their_groups(
    db: psycopg.Connection,
) -> None:
    # Given two detectors of one project anomalous on service checkout (one correlated group), and a third
    # anomalous on search (a group of its own)
    project = make_project(scopes=("admin", "read"), label="Lifecycle")
    path = f"/v1/projects/{project.project_id}/anomaly-detectors"
    ids = []
    for name, service in (("latency", "checkout"), ("errors", "checkout"), ("search", "search")):
        response = call("POST", path, project.headers, {"name": name, "query": {"name": name, "group_by": ["service"]}})
        assert response.status == 201, response.text
        did = UUID(response.data["id"])
        sid = add_series(db, project, did, {"service": service}, anomalous=True)
        add_event(db, project, did, sid, {"service": service}, T)
        ids.append(did)
    with transaction() as cur:
        correlate(cur, project.project_id, T + timedelta(minutes=1))

    def group_states() -> dict[str, str]:
        found = call("GET", f"/v1/projects/{project.project_id}/anomaly-groups", project.headers).data
        return {g["shared_labels"]["service"]: g["status"] for g in found}

    assert group_states() == {"checkout": "open", "search": "open"}

    # When the first is disabled: its anomaly closes, its series is not shown anomalous; the group stays open
    assert call("PATCH", f"{path}/{ids[0]}", project.headers, {"enabled": False}).status == 200
    statuses = rows(db, "select status from public.anomaly_events where detector_id = %s", ids[0])
    assert [r["status"] for r in statuses] == ["closed"]
    assert call("GET", f"{path}/{ids[0]}/series", project.headers).data[0]["anomalous"] is False
    assert group_states() == {"checkout": "open", "search": "open"}

    # When the second is deleted: its anomaly closes, and the checkout group with it, at once
    assert call("DELETE", f"{path}/{ids[1]}", project.headers).status == 200
    assert group_states() == {"checkout": "closed", "search": "open"}

    # When the third's query changes: its series and anomaly go, and its group (left empty) with them
    assert call("PATCH", f"{path}/{ids[2]}", project.headers, {"query": {"name": "search2"}}).status == 200
    assert group_states() == {"checkout": "closed"}
