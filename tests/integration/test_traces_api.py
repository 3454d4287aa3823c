"""The traces function over its Lambda handler, on spans and logs stored through the real ingest path: one
trace as a tree with its logs, trace search with every filter and pagination, service statistics against
values computed here, bad input, and tenant isolation on every route."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import pytest
from observai.telemetry import usage
from observai.telemetry.writer import clear_caches

from tests.helpers.ingest import IngestProject, add_key, iso, log, make_project, post_native, span
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(minutes=30)  # the checkout trace starts here
CHECKOUT = "a" * 31 + "1"
HEALTH = "b" * 31 + "2"
ORDER = "c" * 31 + "3"
LOGS_ONLY = "d" * 31 + "4"
PAGED = [f"{i:032x}" for i in range(1, 8)]  # 7 small traces, a second apart, for paging
MISSING_PARENT = "ffffffffffffffff"


def ms(n: float) -> timedelta:
    return timedelta(milliseconds=n)


def _spans() -> list[dict[str, Any]]:
    """The checkout trace (a root, a client child, a server child with an error and a grandchild with an event
    and a link, and an orphan), a health check, an order consumed by a worker, and 7 paged traces."""
    checkout = [
        span("GET /checkout", trace_id=CHECKOUT, span_id="0000000000000001", start=T0, duration_ms=100,
             kind="server", service="frontend", status="ok",
             attributes={"http.method": "GET", "http.status_code": 200}),
        span("SELECT orders", trace_id=CHECKOUT, span_id="0000000000000002", parent_span_id="0000000000000001",
             start=T0 + ms(10), duration_ms=30, kind="client", service="frontend",
             attributes={"db.system": "postgresql"}),
        span("POST /charge", trace_id=CHECKOUT, span_id="0000000000000003", parent_span_id="0000000000000001",
             start=T0 + ms(50), duration_ms=40, kind="server", service="payments", status="error",
             status_message="card declined", attributes={"http.method": "POST", "http.status_code": 502}),
        span("charge card", trace_id=CHECKOUT, span_id="0000000000000004", parent_span_id="0000000000000003",
             start=T0 + ms(55), duration_ms=20, kind="internal", service="payments",
             events=[{"name": "retry", "time": iso(T0 + ms(60)), "attributes": {"attempt": 2}}],
             links=[{"trace_id": ORDER, "span_id": "0000000000000031"}]),
        span("late span", trace_id=CHECKOUT, span_id="0000000000000005", parent_span_id=MISSING_PARENT,
             start=T0 + ms(60), duration_ms=5, kind="internal", service="payments"),
    ]  # fmt: skip
    health = [
        span("GET /health", trace_id=HEALTH, span_id="0000000000000021", start=T0 + timedelta(seconds=1),
             duration_ms=2, kind="server", service="frontend", status="ok", attributes={"http.method": "GET"}),
    ]  # fmt: skip
    order = [
        span("consume order", trace_id=ORDER, span_id="0000000000000031", start=T0 + timedelta(seconds=2),
             duration_ms=500, kind="consumer", service="worker", status="error", attributes={"queue": "orders"}),
        span("publish receipt", trace_id=ORDER, span_id="0000000000000032", parent_span_id="0000000000000031",
             start=T0 + timedelta(seconds=2.3), duration_ms=8, kind="producer", service="worker"),
    ]  # fmt: skip
    paged = [
        span("GET /page", trace_id=tid, span_id=f"{i + 0x100:016x}", start=T0 + timedelta(seconds=10 + i),
             duration_ms=10 + i, kind="server", service="frontend", attributes={"page": i})
        for i, tid in enumerate(PAGED)
    ]  # fmt: skip
    return checkout + health + order + paged


def _logs() -> list[dict[str, Any]]:
    return [
        log("checkout started", at=T0 + ms(1), trace_id=CHECKOUT, span_id="0000000000000001", service="frontend"),
        log("charging card", at=T0 + ms(56), trace_id=CHECKOUT, span_id="0000000000000004", service="payments",
            severity="INFO"),
        log("card declined", at=T0 + ms(80), trace_id=CHECKOUT, span_id="0000000000000003", service="payments",
            severity="ERROR", attributes={"reason": "insufficient funds"}),
        log("health ok", at=T0 + timedelta(seconds=1), trace_id=HEALTH, service="frontend"),
        log("no trace here", at=T0 + ms(20), service="frontend"),
        log("spans were sampled out", at=T0 + timedelta(seconds=5), trace_id=LOGS_ONLY, service="batch"),
    ]  # fmt: skip


@dataclass
class Tenant:
    project: IngestProject  # its key has the read scope
    viewer: User

    @property
    def path(self) -> str:
        return f"/v1/projects/{self.project.project_id}"


def _ingest(project: IngestProject, events: list[dict[str, Any]]) -> None:
    writer = add_key(project, ("ingest",))
    result = post_native(writer.headers, events)
    assert result.status == 202 and result.data["status"] == "stored", result.text
    assert result.data["accepted"] == len(events), result.text


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    import psycopg

    usage.reset_caches()
    clear_caches()
    project = make_project(scopes=("read",), label="Traces")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        viewer = make_user(db)
        add_membership(db, project.org_id, viewer.id, "viewer")
    _ingest(project, _spans() + _logs())
    return Tenant(project, viewer)


@pytest.fixture(scope="module")
def stranger(database_url: str) -> tuple[User, IngestProject]:
    """Another organization: its owner, and its project's read key; it holds a trace with the checkout's id."""
    import psycopg

    other = make_project(scopes=("read",), label="Stranger")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
    _ingest(
        other,
        [
            span("secret op", trace_id=CHECKOUT, start=T0, duration_ms=1, kind="server", service="secret"),
            log("secret log", at=T0, trace_id=CHECKOUT, service="secret"),
        ],
    )
    return owner, other


def get(headers: dict[str, str], path: str, query: str = "") -> Result:
    return invoke("traces", "GET", path, headers=headers, query=query)


# --- one trace -----------------------------------------------------------------------------------------------


def test_a_trace_is_its_span_tree_with_offsets_durations_and_summary(tenant: Tenant) -> None:
    # When the viewer opens the checkout trace (no time hint)
    result = get(tenant.viewer.headers, f"{tenant.path}/traces/{CHECKOUT}")
    # Then every span is there in tree order: root, its children by start, the grandchild under its parent,
    # and the span whose parent never arrived as a flagged root
    assert result.status == 200, result.text
    trace = result.data
    assert trace["trace_id"] == CHECKOUT
    assert [(s["name"], s["depth"], s["orphan"]) for s in trace["spans"]] == [
        ("GET /checkout", 0, False),
        ("SELECT orders", 1, False),
        ("POST /charge", 1, False),
        ("charge card", 2, False),
        ("late span", 0, True),
    ]
    by_name = {s["name"]: s for s in trace["spans"]}
    assert by_name["GET /checkout"]["child_count"] == 2
    assert by_name["late span"]["parent_span_id"] == MISSING_PARENT
    # Offsets from the trace start and durations, in milliseconds
    assert [s["start_offset_ms"] for s in trace["spans"]] == [0.0, 10.0, 50.0, 55.0, 60.0]
    assert [s["duration_ms"] for s in trace["spans"]] == [100.0, 30.0, 40.0, 20.0, 5.0]
    # Service, status, attributes, events and links as ingested
    charge = by_name["POST /charge"]
    assert (charge["service"], charge["kind"], charge["status_code"], charge["status_message"]) == (
        "payments", "server", "error", "card declined",
    )  # fmt: skip
    assert charge["attributes"] == {"http.method": "POST", "http.status_code": 502}
    card = by_name["charge card"]
    assert [e["name"] for e in card["events"]] == ["retry"] and card["events"][0]["attributes"] == {"attempt": 2}
    assert [(lk["trace_id"], lk["span_id"]) for lk in card["links"]] == [(ORDER, "0000000000000031")]
    # And the summary
    assert trace["summary"] | {"start_time": None, "end_time": None} == {
        "span_count": 5,
        "services": ["frontend", "payments"],
        "start_time": None,
        "end_time": None,
        "duration_ms": 100.0,
        "error_count": 1,
        "root_count": 2,
        "orphan_count": 1,
    }
    assert trace["spans_truncated"] is False


def test_the_logs_carrying_the_trace_id_come_with_it_oldest_first(tenant: Tenant) -> None:
    trace = get(tenant.project.headers, f"{tenant.path}/traces/{CHECKOUT}").data
    # Then exactly the three checkout logs, in time order, with their span ids; not the other trace's, not untraced ones
    assert [(lg["body"], lg["span_id"]) for lg in trace["logs"]] == [
        ("checkout started", "0000000000000001"),
        ("charging card", "0000000000000004"),
        ("card declined", "0000000000000003"),
    ]
    declined = trace["logs"][2]
    assert declined["severity_text"] == "ERROR" and declined["attributes"] == {"reason": "insufficient funds"}
    assert trace["logs_truncated"] is False


def test_a_trace_log_id_is_the_string_the_logs_api_gives_and_opens_its_context(tenant: Tenant) -> None:
    # Given the checkout trace's logs, and the same lines found through the logs API
    trace_logs = get(tenant.project.headers, f"{tenant.path}/traces/{CHECKOUT}").data["logs"]
    window = {"q": f"trace_id:{CHECKOUT}", "from": iso(T0 - timedelta(minutes=1)), "to": iso(NOW + ms(60_000))}
    searched = invoke("logs", "GET", f"{tenant.path}/logs", headers=tenant.project.headers, query=urlencode(window))
    assert searched.status == 200, searched.text
    # Then a log id has one type, a decimal string, and the same value in both
    assert all(isinstance(line["id"], str) and line["id"].isdigit() for line in trace_logs)
    assert sorted(line["id"] for line in trace_logs) == sorted(line["id"] for line in searched.data)
    # And a trace's log id opens the line's context as it is
    context = invoke("logs", "GET", f"{tenant.path}/logs/{trace_logs[0]['id']}/context", headers=tenant.project.headers)
    assert context.status == 200, context.text


def test_time_hints_bound_the_spans_read(tenant: Tenant) -> None:
    path = f"{tenant.path}/traces/{CHECKOUT}"
    # When the hint covers the trace, the same trace comes back
    covering = get(
        tenant.viewer.headers, path, f"from={iso(T0 - timedelta(hours=1))}&to={iso(T0 + timedelta(hours=1))}"
    )
    assert covering.status == 200 and covering.data["summary"]["span_count"] == 5
    # When the hint covers only the first 50 ms, only the spans starting in it
    early = get(tenant.viewer.headers, path, f"from={iso(T0)}&to={iso(T0 + ms(50))}")
    assert [s["name"] for s in early.data["spans"]] == ["GET /checkout", "SELECT orders"]
    # When the hint misses the trace (and no log is in it either), 404
    missed = get(tenant.viewer.headers, path, f"from={iso(T0 - timedelta(days=3))}&to={iso(T0 - timedelta(days=2))}")
    assert missed.status == 404 and missed.error["code"] == "not_found"


def test_an_old_trace_and_one_crossing_the_recent_days_are_found_whole_without_a_hint(tenant: Tenant) -> None:
    # Given a trace 4 days old (outside the recent days probed first), and one whose root started 10 minutes
    # before the recent days began and whose child started 10 minutes after
    from observai.traces.reads import RECENT_DAYS

    old_id, crossing_id = uuid.uuid4().hex, uuid.uuid4().hex
    boundary = datetime.now(UTC) - RECENT_DAYS
    _ingest(
        tenant.project,
        [
            span("old root", trace_id=old_id, span_id="00000000000000a1", start=NOW - timedelta(days=4),
                 duration_ms=5, kind="server", service="archive"),
            span("crossing root", trace_id=crossing_id, span_id="00000000000000b1",
                 start=boundary - timedelta(minutes=10), duration_ms=30 * 60 * 1000, kind="server", service="batch"),
            span("crossing child", trace_id=crossing_id, span_id="00000000000000b2",
                 parent_span_id="00000000000000b1", start=boundary + timedelta(minutes=10), duration_ms=1,
                 service="batch"),
        ],
    )  # fmt: skip
    # When each is opened without a time hint
    old = get(tenant.viewer.headers, f"{tenant.path}/traces/{old_id}")
    crossing = get(tenant.viewer.headers, f"{tenant.path}/traces/{crossing_id}")
    # Then both are found, each whole
    assert old.status == 200 and [s["name"] for s in old.data["spans"]] == ["old root"]
    assert [(s["name"], s["depth"]) for s in crossing.data["spans"]] == [("crossing root", 0), ("crossing child", 1)]
    assert crossing.data["summary"]["duration_ms"] == 30 * 60 * 1000


def test_a_trace_id_in_capitals_is_the_same_trace(tenant: Tenant) -> None:
    upper = get(tenant.viewer.headers, f"{tenant.path}/traces/{CHECKOUT.upper()}")
    assert upper.status == 200 and upper.data["trace_id"] == CHECKOUT


def test_a_trace_known_only_from_logs_has_no_spans_but_its_logs(tenant: Tenant) -> None:
    result = get(tenant.viewer.headers, f"{tenant.path}/traces/{LOGS_ONLY}")
    assert result.status == 200, result.text
    assert result.data["spans"] == [] and result.data["summary"]["span_count"] == 0
    assert [lg["body"] for lg in result.data["logs"]] == ["spans were sampled out"]


def test_an_unknown_trace_is_404(tenant: Tenant) -> None:
    result = get(tenant.viewer.headers, f"{tenant.path}/traces/{uuid.uuid4().hex}")
    assert result.status == 404 and result.error["code"] == "not_found"


def test_trace_span_and_log_bounds_say_truncated(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    from observai.traces import reads

    # Given bounds smaller than the checkout trace (5 spans, 3 logs)
    monkeypatch.setattr(reads, "MAX_SPANS", 3)
    monkeypatch.setattr(reads, "MAX_TRACE_LOGS", 2)
    trace = get(tenant.viewer.headers, f"{tenant.path}/traces/{CHECKOUT}").data
    # Then the earliest spans and logs come, and both are flagged truncated
    assert sorted(s["name"] for s in trace["spans"]) == ["GET /checkout", "POST /charge", "SELECT orders"]
    assert trace["spans_truncated"] is True
    assert [lg["body"] for lg in trace["logs"]] == ["checkout started", "charging card"]
    assert trace["logs_truncated"] is True


# --- search --------------------------------------------------------------------------------------------------

WINDOW = f"from={iso(T0 - timedelta(minutes=5))}&to={iso(T0 + timedelta(minutes=5))}"


def search(tenant: Tenant, query: str = "") -> Result:
    return get(tenant.viewer.headers, f"{tenant.path}/traces", "&".join(p for p in (WINDOW, query) if p))


def ids(result: Result) -> list[str]:
    assert result.status == 200, result.text
    return [t["trace_id"] for t in result.data]


def test_search_lists_one_row_per_trace_newest_first_with_its_summary(tenant: Tenant) -> None:
    result = search(tenant, "limit=200")
    # Then every trace once, by its newest span, newest first
    assert ids(result) == [*reversed(PAGED), ORDER, HEALTH, CHECKOUT]
    checkout = result.data[-1]
    assert checkout | {"start_time": None, "matched_at": None} == {
        "trace_id": CHECKOUT,
        "root_name": "GET /checkout",
        "root_service": "frontend",
        "start_time": None,
        "duration_ms": 100.0,
        "span_count": 5,
        "error_count": 1,
        "has_error": True,
        "services": ["frontend", "payments"],
        "matched_at": None,
    }
    assert datetime.fromisoformat(checkout["start_time"]) == T0
    assert datetime.fromisoformat(checkout["matched_at"]) == T0 + ms(60)  # its newest span: the orphan


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("service=payments", [CHECKOUT]),
        ("service=worker", [ORDER]),
        ("operation=GET%20/health", [HEALTH]),
        ("status=error", [ORDER, CHECKOUT]),
        ("service=frontend&status=error", []),
        ("min_duration=400ms", [ORDER]),
        ("min_duration=0.1s&max_duration=100", [CHECKOUT]),
        ("max_duration=2ms", [HEALTH]),
        ("max_duration=2000us&service=worker", []),
        ("match[http.method]=POST", [CHECKOUT]),
        ("match[http.status_code]=502", [CHECKOUT]),
        ("match[http.method]=GET&match[http.status_code]=200", [CHECKOUT]),
        ("match[queue]=orders", [ORDER]),
        ("match[page]=3", [PAGED[3]]),
        ("match[http.method]=DELETE", []),
    ],
)
def test_search_filters(tenant: Tenant, query: str, expected: list[str]) -> None:
    # When searching with the filter, then exactly the traces having a span that matches all of it
    assert ids(search(tenant, query)) == expected


def test_the_window_selects_by_span_start(tenant: Tenant) -> None:
    # Given a window holding only the paged traces' spans
    window = f"from={iso(T0 + timedelta(seconds=12))}&to={iso(T0 + timedelta(seconds=15))}"
    result = get(tenant.viewer.headers, f"{tenant.path}/traces", window)
    assert ids(result) == [PAGED[4], PAGED[3], PAGED[2]]


def test_search_pages_with_a_cursor_without_gaps_or_repeats(tenant: Tenant) -> None:
    # When paging three at a time
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        result = search(tenant, "limit=3" + (f"&cursor={cursor}" if cursor else ""))
        seen += ids(result)
        assert len(result.data) <= 3
        cursor = result.json()["meta"]["next_cursor"]
        if cursor is None:
            break
    # Then every trace exactly once, in the order of one big page
    assert seen == [*reversed(PAGED), ORDER, HEALTH, CHECKOUT]


def test_a_page_cut_by_the_scan_bound_continues_where_it_stopped(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from observai.traces import reads

    # Given a scan bound of 2 spans per page (the checkout trace alone has 5)
    monkeypatch.setattr(reads, "SEARCH_SCAN", 2)
    seen: list[str] = []
    cursor = None
    for _ in range(40):
        result = search(tenant, "limit=5" + (f"&cursor={cursor}" if cursor else ""))
        seen += ids(result)
        cursor = result.json()["meta"]["next_cursor"]
        if cursor is None:
            break
    # Then paging still lists every trace exactly once, in order
    assert seen == [*reversed(PAGED), ORDER, HEALTH, CHECKOUT]


def _all_pages(tenant: Tenant, query: str, limit: int) -> tuple[list[str], int]:
    """Trace ids over every page, and the number of pages."""
    seen: list[str] = []
    cursor = None
    for page in range(1, 60):
        result = search(tenant, f"{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        seen += ids(result)
        cursor = result.json()["meta"]["next_cursor"]
        if cursor is None:
            return seen, page
    raise AssertionError("paging did not end")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=error", [ORDER, CHECKOUT]),
        ("match[http.method]=GET", [HEALTH, CHECKOUT]),
        ("service=frontend&match[page]=5", [PAGED[5]]),
        ("min_duration=11ms&max_duration=13ms", [PAGED[3], PAGED[2], PAGED[1]]),
    ],
)
def test_a_page_cut_by_the_examine_bound_continues_below_it(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch, query: str, expected: list[str]
) -> None:
    from observai.traces import reads

    # Given filters without an index and a bound of 3 spans examined per page (the window holds 17)
    monkeypatch.setattr(reads, "SEARCH_EXAMINE", 3)
    # When paging to the end
    seen, pages = _all_pages(tenant, query, limit=2)
    # Then exactly the matching traces, each once, in order, over more pages than the matches alone need
    assert seen == expected
    assert pages > math.ceil(len(expected) / 2)


# --- services ------------------------------------------------------------------------------------------------


def nearest_rank(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(quantile * len(ordered) - 1e-9)) - 1]


def test_service_stats_match_values_computed_from_the_spans(tenant: Tenant) -> None:
    # Given the window of all the spans, 10 minutes long
    start, end = T0 - timedelta(minutes=5), T0 + timedelta(minutes=5)
    result = get(tenant.viewer.headers, f"{tenant.path}/services", f"from={iso(start)}&to={iso(end)}")
    assert result.status == 200, result.text
    assert result.data["seconds"] == 600.0
    stats = {s["service"]: s for s in result.data["services"]}
    assert list(stats) == ["frontend", "payments", "worker"]
    # Then, requests being server/consumer spans and roots: computed here from the spans sent
    requests: dict[str, list[tuple[float, bool]]] = {"frontend": [], "payments": [], "worker": []}
    spans: dict[str, int] = {"frontend": 0, "payments": 0, "worker": 0}
    for s in _spans():
        service = s["service"]
        spans[service] += 1
        if s.get("kind") in ("server", "consumer") or "parent_span_id" not in s:
            requests[service].append((s["duration_ms"], s.get("status") == "error"))
    for service, reqs in requests.items():
        durations = [d for d, _ in reqs]
        errors = sum(1 for _, e in reqs if e)
        assert stats[service] == {
            "service": service,
            "span_count": spans[service],
            "requests": len(reqs),
            "request_rate_per_s": pytest.approx(len(reqs) / 600),
            "errors": errors,
            "error_rate": pytest.approx(errors / len(reqs)),
            "p50_ms": pytest.approx(nearest_rank(durations, 0.5)),
            "p95_ms": pytest.approx(nearest_rank(durations, 0.95)),
        }, service
    # Spot-check the hand numbers: frontend has 9 requests (checkout root, health, 7 pages), payments 1 (the
    # charge server span; the orphan is internal with a parent id), the worker its consumer span
    assert (stats["frontend"]["requests"], stats["payments"]["requests"], stats["worker"]["requests"]) == (9, 1, 1)
    assert stats["payments"]["error_rate"] == 1.0 and stats["frontend"]["p50_ms"] == 13.0


def test_service_stats_of_an_empty_window_are_empty(tenant: Tenant) -> None:
    start = NOW - timedelta(days=3)
    result = get(
        tenant.viewer.headers, f"{tenant.path}/services", f"from={iso(start)}&to={iso(start + timedelta(hours=1))}"
    )
    assert result.status == 200 and result.data["services"] == []


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "status", "loc"),
    [
        ("/traces/xyz", "", 422, "trace_id"),
        ("/traces/" + "g" * 32, "", 422, "trace_id"),
        ("/traces/" + "a" * 33, "", 422, "trace_id"),
        ("/traces/" + CHECKOUT, "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "from"),
        ("/traces/" + CHECKOUT, "from=yesterday", 422, "from"),
        ("/traces/" + CHECKOUT, "to=2026-01-01T00:00:00", 400, "to"),
        ("/traces", "min_duration=fast", 400, "min_duration"),
        ("/traces", "max_duration=-5ms", 400, "max_duration"),
        ("/traces", "min_duration=2s&max_duration=1s", 400, "min_duration"),
        ("/traces", "status=broken", 422, "status"),
        ("/traces", "cursor=not-a-cursor", 400, "cursor"),
        ("/traces", "limit=0", 422, "limit"),
        ("/traces", "from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", 400, "from"),
        ("/traces", "from=2026-01-01T00:00:00", 400, "from"),
        ("/traces", "match[]=x", 400, "match[]"),
        ("/services", "from=2026-01-01T00:00:00Z&to=2026-01-03T00:00:00Z", 400, "from"),
        ("/services", "to=2026-01-01T00:00:00Z&from=2026-01-01T00:00:00Z", 400, "from"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_parameter(tenant: Tenant, path: str, query: str, status: int, loc: str) -> None:
    result = get(tenant.viewer.headers, tenant.path + path, query)
    assert result.status == status, result.text
    assert loc in str(result.error["details"]), result.text


# --- tenant isolation ----------------------------------------------------------------------------------------


def _every_route(tenant: Tenant) -> list[tuple[str, str]]:
    return [
        (f"{tenant.path}/traces/{CHECKOUT}", ""),
        (f"{tenant.path}/traces", WINDOW),
        (f"{tenant.path}/services", WINDOW),
    ]


def test_another_tenant_gets_404_on_every_route_and_never_data(tenant: Tenant, stranger: tuple[User, Any]) -> None:
    owner, other_project = stranger
    for path, query in _every_route(tenant):
        # Another organization's owner, and another project's read key
        for headers in (owner.headers, other_project.headers):
            result = get(headers, path, query)
            assert result.status == 404, (path, result.text)
            assert result.error["code"] == "not_found"
            assert "secret" not in result.text and "checkout" not in result.text


def test_the_same_trace_id_in_two_projects_shows_each_only_its_own(tenant: Tenant, stranger: tuple[User, Any]) -> None:
    # Given both projects hold a trace with the checkout's id
    owner, other_project = stranger
    theirs = get(owner.headers, f"/v1/projects/{other_project.project_id}/traces/{CHECKOUT}")
    ours = get(tenant.viewer.headers, f"{tenant.path}/traces/{CHECKOUT}")
    # Then each sees its own spans and logs only
    assert [s["name"] for s in theirs.data["spans"]] == ["secret op"]
    assert [lg["body"] for lg in theirs.data["logs"]] == ["secret log"]
    assert "secret" not in ours.text
    their_search = get(other_project.headers, f"/v1/projects/{other_project.project_id}/traces", WINDOW)
    assert ids(their_search) == [CHECKOUT] and their_search.data[0]["root_name"] == "secret op"
    their_services = get(other_project.headers, f"/v1/projects/{other_project.project_id}/services", WINDOW)
    assert [s["service"] for s in their_services.data["services"]] == ["secret"]


def test_a_key_without_the_read_scope_is_403_and_a_random_project_404(tenant: Tenant) -> None:
    ingest_only = add_key(tenant.project, ("ingest",))
    nowhere = f"/v1/projects/{UUID(int=7)}"
    for path, query in _every_route(tenant):
        result = get(ingest_only.headers, path, query)
        assert result.status == 403 and result.error["code"] == "scope_missing", result.text
        assert get(tenant.viewer.headers, path.replace(tenant.path, nowhere), query).status == 404
    assert get({}, f"{tenant.path}/traces", WINDOW).status == 401


# --- OTLP -----------------------------------------------------------------------------------------------------


def test_a_trace_sent_over_otlp_is_shown_whole_with_its_otlp_logs(database_url: str) -> None:
    import time

    from tests.helpers import otlp_payloads as otlp
    from tests.helpers.ingest import post_otlp

    # Given a project that received the OTLP traces and logs export requests (protobuf), as an SDK sends them
    project = make_project(scopes=("ingest", "read"), label="Otlp")
    now_ns = time.time_ns()
    for path, message in (("/v1/traces", otlp.traces_request(now_ns)), ("/v1/logs", otlp.logs_request(now_ns))):
        sent = post_otlp(path, project.headers, otlp.to_protobuf(message))
        assert sent.status == 200, sent.text
    base = f"/v1/projects/{project.project_id}"
    trace_a, trace_b = otlp.TRACE_ID_A.hex(), otlp.TRACE_ID_B.hex()

    # When the checkout trace is opened
    result = get(project.headers, f"{base}/traces/{trace_a}")
    assert result.status == 200, result.text
    spans = result.data["spans"]
    # Then the root comes first with its five children under it, in start order
    assert [(s["name"], s["depth"]) for s in spans] == [
        ("GET /checkout", 0),
        ("kind 0", 1),
        ("kind 1", 1),
        ("kind 4", 1),
        ("kind 5", 1),
        ("SELECT carts", 1),
    ]
    root, child = spans[0], spans[-1]
    assert (root["kind"], root["status_code"], root["service"], root["duration_ms"]) == (
        "server",
        "ok",
        "checkout",
        250.0,
    )
    assert [e["name"] for e in root["events"]] == ["cache.miss"]
    assert [lk["trace_id"] for lk in root["links"]] == [trace_b]
    assert (child["status_code"], child["status_message"], child["start_offset_ms"]) == (
        "error",
        "statement timeout",
        20.0,
    )
    assert [e["name"] for e in child["events"]] == ["retry", "exception"]
    # And the log record correlated with the child span comes with the trace
    assert [(lg["body"], lg["span_id"]) for lg in result.data["logs"]] == [("payment failed", otlp.CHILD_SPAN_ID.hex())]

    # And search finds each trace by its span attributes
    assert ids(get(project.headers, f"{base}/traces", "match[http.request.method]=GET")) == [trace_a]
    assert ids(get(project.headers, f"{base}/traces", "match[messaging.system]=sqs")) == [trace_b]
