"""The logs function over its Lambda handler: search semantics (words, phrases, prefixes, fields, attributes,
negation, OR), the compiled SQL against a Python model of the language (hypothesis), pagination, the severity
histogram, a line's context, bad input, and tenant isolation on every route."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.logs.query_language import (
    SEVERITY_RANGES,
    And,
    FieldTerm,
    Node,
    Not,
    Or,
    Text,
    compile_node,
    format_query,
)
from observai.telemetry import usage
from observai.telemetry.model import Batch, LogRecord
from observai.telemetry.writer import clear_caches, store_batch

from tests.helpers.ingest import IngestProject, add_key, iso, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
BASE = (NOW - timedelta(hours=3)).replace(second=0, microsecond=0)
T1 = "5b8efff798038103d269b633813fc60c"

# (body, severity_number, service, attributes, resource, trace_id): times are BASE + 10 s × index.
LINES: list[tuple[str, int, str | None, dict[str, Any], dict[str, Any], str | None]] = [
    ("payment failed for order 42", 17, "api", {"http.status_code": 500, "user.id": "u1"}, {"host.name": "web-1"}, T1),
    ("payment succeeded", 9, "api", {"http.status_code": 200}, {"host.name": "web-2"}, None),
    ("failed to connect to database", 17, "worker", {"http.status_code": "500"}, {"host.name": "job-1"}, None),
    ("timeout waiting for upstream", 13, "web", {"http": {"status_code": 504}}, {}, None),
    ("failed payment retry", 5, None, {}, {}, None),
    ("card declined", 21, "billing", {"retry": True, "amount": 12.5}, {"host.name": "web-1"}, None),
    ("user login", 9, "auth", {"user.id": "u2"}, {}, T1),
    ("timeouts are configurable", 1, "api", {"http.status_code": 404}, {}, None),
    ("order shipped", 0, "api-gateway", {"region": "eu"}, {}, None),
]
WORDS = ["payment", "failed", "timeout", "timeouts", "card", "user", "order", "login", "database", "upstream"]
SERVICES = ["api", "worker", "web", "billing", "auth", "api-gateway", "pager"]
PAGER_LINES = 130  # service "pager", three lines per timestamp (ties broken by id)
PAGER_START = BASE + timedelta(minutes=30)


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1_000


@dataclass
class Tenant:
    project: IngestProject  # its key has the read scope
    owner: User
    viewer: User
    ids: list[int]  # ids of LINES, in order

    @property
    def path(self) -> str:
        return f"/v1/projects/{self.project.project_id}/logs"


def _store(project: IngestProject, records: list[LogRecord]) -> None:
    store_batch(
        project.org_id,
        project.project_id,
        Batch(logs=records),
        idempotency_key=None,
        request_hash="test",
        response={},
        body_bytes=0,
    )


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    usage.reset_caches()
    clear_caches()
    project = make_project(scopes=("read",), label="Logs")
    records = [
        LogRecord(
            time_ns=_ns(BASE + timedelta(seconds=10 * i)),
            body=body,
            severity_number=severity,
            service=service,
            attributes=attributes,
            resource={**resource, **({"service.name": service} if service else {})},
            trace_id=trace_id,
            span_id="eee19b7ec3c1b174" if trace_id else None,
        )
        for i, (body, severity, service, attributes, resource, trace_id) in enumerate(LINES)
    ]
    records += [
        LogRecord(
            time_ns=_ns(PAGER_START + timedelta(seconds=i // 3)),
            body=f"page line {i}",
            severity_number=9,
            service="pager",
            attributes={"n": i},
        )
        for i in range(PAGER_LINES)
    ]
    _store(project, records)
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        users = {}
        for role in ("owner", "viewer"):
            users[role] = make_user(db)
            add_membership(db, project.org_id, users[role].id, role)
        ids = [
            row["id"]
            for row in db.execute(
                "select id from public.logs where project_id = %s and service is distinct from 'pager'"
                " order by time, id",
                (project.project_id,),
            ).fetchall()
        ]
    return Tenant(project, users["owner"], users["viewer"], ids)


@pytest.fixture(scope="module")
def stranger(database_url: str) -> tuple[User, IngestProject, int]:
    """Another organization: its owner, its project's read key, and the id of one of its log lines."""
    other = make_project(scopes=("read",), label="Stranger")
    _store(other, [LogRecord(time_ns=_ns(BASE), body="payment failed secret", severity_number=17, service="api")])
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
        row = db.execute("select id from public.logs where project_id = %s", (other.project_id,)).fetchone()
    assert row is not None
    return owner, other, row["id"]


RANGE = {"from": iso(BASE - timedelta(minutes=1)), "to": iso(BASE + timedelta(hours=1))}


def get(headers: dict[str, str], path: str, **params: Any) -> Result:
    return invoke("logs", "GET", path, headers=headers, query=urlencode(params))


def search(tenant: Tenant, q: str, **params: Any) -> Result:
    return get(tenant.project.headers, tenant.path, q=q, **{**RANGE, **params})


def bodies(result: Result) -> list[str]:
    assert result.status == 200, result.text
    return [item["body"] for item in result.data]


def matching_as(headers: dict[str, str], tenant: Tenant, q: str) -> set[str]:
    result = get(headers, tenant.path, q=q, limit=200, **RANGE)
    return set(bodies(result))


def matching(q: str, tenant: Tenant) -> set[str]:
    return set(bodies(search(tenant, q, limit=200))) - {f"page line {i}" for i in range(PAGER_LINES)}


# --- search semantics --------------------------------------------------------------------------------------------


def test_words_match_whole_tokens_anywhere_and_phrases_in_order(tenant: Tenant) -> None:
    # Given the lines / When searching words, a phrase, a prefix / Then whole tokens match, case-insensitively
    assert matching("payment failed", tenant) == {"payment failed for order 42", "failed payment retry"}
    assert matching('"payment failed"', tenant) == {"payment failed for order 42"}
    assert matching("PAYMENT", tenant) == {"payment failed for order 42", "payment succeeded", "failed payment retry"}
    assert matching("timeout", tenant) == {"timeout waiting for upstream"}
    assert matching("timeout*", tenant) == {"timeout waiting for upstream", "timeouts are configurable"}
    assert matching("nothing-like-this", tenant) == set()


def test_fields_severity_service_trace_and_attributes(tenant: Tenant) -> None:
    assert matching("severity:error", tenant) == {"payment failed for order 42", "failed to connect to database"}
    assert matching("level:fatal", tenant) == {"card declined"}
    assert matching("severity>=warn", tenant) == {
        "payment failed for order 42",
        "failed to connect to database",
        "timeout waiting for upstream",
        "card declined",
    }
    assert matching("severity<info", tenant) == {"failed payment retry", "timeouts are configurable", "order shipped"}
    assert matching("severity:unspecified", tenant) == {"order shipped"}
    assert matching("service:api", tenant) == {
        "payment failed for order 42",
        "payment succeeded",
        "timeouts are configurable",
    }
    assert matching("service:api*", tenant) == matching("service:api", tenant) | {"order shipped"}
    assert matching(f"trace_id:{T1.upper()}", tenant) == {"payment failed for order 42", "user login"}
    assert matching("span_id:eee19b7ec3c1b174", tenant) == {"payment failed for order 42", "user login"}
    # Unquoted 500 is the number or the string; quoted, the string only; nested documents match dotted keys
    assert matching("attributes.http.status_code:500", tenant) == {
        "payment failed for order 42",
        "failed to connect to database",
    }
    assert matching('attributes.http.status_code:"500"', tenant) == {"failed to connect to database"}
    assert matching("attributes.http.status_code:504", tenant) == {"timeout waiting for upstream"}
    assert matching("attributes.http.status_code>=500", tenant) == {
        "payment failed for order 42",
        "timeout waiting for upstream",
    }
    assert matching("attributes.retry:true attributes.amount<13", tenant) == {"card declined"}
    assert matching("attributes.user.id:*", tenant) == {"payment failed for order 42", "user login"}
    assert matching("attributes.user.id:u*", tenant) == {"payment failed for order 42", "user login"}
    assert matching("resource.host.name:web-1", tenant) == {"payment failed for order 42", "card declined"}
    assert matching('body:"card declined"', tenant) == {"card declined"}


def test_negation_or_and_parentheses(tenant: Tenant) -> None:
    # A line without a service is not "service:api", so -service:api keeps it
    assert matching("payment -service:api", tenant) == {"failed payment retry"}
    assert matching("payment NOT service:api", tenant) == {"failed payment retry"}
    assert matching("card OR login", tenant) == {"card declined", "user login"}
    assert matching("(card OR login) severity:info", tenant) == {"user login"}
    assert matching("card OR login severity:info", tenant) == {"card declined", "user login"}
    assert matching("failed AND NOT (payment OR database)", tenant) == set()
    assert matching("-attributes.http.status_code:* service:api*", tenant) == {"order shipped"}


def test_items_carry_the_line_fields(tenant: Tenant) -> None:
    result = search(tenant, '"payment failed"')
    [item] = result.data
    assert item == {
        "id": str(tenant.ids[0]),
        "time": item["time"],
        "observed_time": None,
        "severity": "error",
        "severity_number": 17,
        "severity_text": None,
        "service": "api",
        "body": "payment failed for order 42",
        "attributes": {"http.status_code": 500, "user.id": "u1"},
        "resource": {"host.name": "web-1", "service.name": "api"},
        "trace_id": T1,
        "span_id": "eee19b7ec3c1b174",
    }
    assert datetime.fromisoformat(item["time"]) == BASE
    assert result.json()["meta"] == {"next_cursor": None, "limit": 50}


def test_the_range_bounds_the_search(tenant: Tenant) -> None:
    # Given a range holding only the 2nd and 3rd lines ([from, to): the 4th line's time is excluded)
    result = search(tenant, "", **{"from": iso(BASE + timedelta(seconds=10)), "to": iso(BASE + timedelta(seconds=30))})
    assert bodies(result) == ["failed to connect to database", "payment succeeded"]
    # And the default range is the last hour: these lines are three hours old
    assert get(tenant.project.headers, tenant.path, q="payment").data == []


# --- the compiled SQL against a model of the language ------------------------------------------------------------


def _tokens(body: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", body.lower())


def _model(node: Node, line: tuple[str, int, str | None, dict[str, Any], dict[str, Any], str | None]) -> bool:
    body, severity, service, attributes, _, _ = line
    if isinstance(node, Not):
        return not _model(node.child, line)
    if isinstance(node, And):
        return all(_model(c, line) for c in node.children)
    if isinstance(node, Or):
        return any(_model(c, line) for c in node.children)
    if isinstance(node, Text):
        tokens = _tokens(body)
        if node.prefix:
            return any(t.startswith(node.value) for t in tokens)
        words = _tokens(node.value)
        return any(tokens[i : i + len(words)] == words for i in range(len(tokens)))
    assert isinstance(node, FieldTerm)
    if node.field == "severity":
        low, high = SEVERITY_RANGES[node.value or ""]
        return {":": low <= severity <= high, ">=": severity >= low, "<": severity < low}[node.op]
    if node.field == "service":
        return service is not None and (service.startswith(node.value or "") if node.prefix else service == node.value)
    value = attributes.get(node.key or "")
    if node.value is None:
        return node.key in attributes
    return value is not None and (value == node.value or str(value).lower() == node.value)


_MODEL_LEAVES = st.one_of(
    st.builds(Text, st.sampled_from(WORDS)),
    st.builds(lambda a, b: Text(f"{a} {b}", quoted=True), st.sampled_from(WORDS), st.sampled_from(WORDS)),
    st.builds(lambda w: Text(w[:4], prefix=True), st.sampled_from(WORDS)),
    st.builds(
        lambda op, level: FieldTerm("severity", op, level),
        st.sampled_from([":", ">=", "<"]),
        st.sampled_from(list(SEVERITY_RANGES)),
    ),
    st.builds(lambda s: FieldTerm("service", ":", s), st.sampled_from(SERVICES)),
    st.builds(lambda s: FieldTerm("service", ":", s[:2], prefix=True), st.sampled_from(SERVICES)),
    st.builds(
        lambda k, v: FieldTerm("attributes", ":", v, key=k),
        st.sampled_from(["user.id", "region", "retry"]),
        st.sampled_from(["u1", "u2", "eu", "true"]),
    ),
    st.builds(lambda k: FieldTerm("attributes", ":", None, key=k), st.sampled_from(["user.id", "region", "retry"])),
)
_MODEL_TREES = st.recursive(
    _MODEL_LEAVES,
    lambda children: st.one_of(
        st.builds(Not, children),
        st.builds(lambda cs: And(tuple(cs)), st.lists(children, min_size=2, max_size=3)),
        st.builds(lambda cs: Or(tuple(cs)), st.lists(children, min_size=2, max_size=3)),
    ),
    max_leaves=6,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=_MODEL_TREES)
def test_compiled_sql_agrees_with_the_model(tenant: Tenant, database_url: str, tree: Node) -> None:
    # Given a generated query / When its SQL filter runs / Then it selects exactly the lines the model selects
    log_filter = compile_node(tree)
    from psycopg import sql

    statement = sql.SQL(
        "select id from public.logs where project_id = %(project)s and service is distinct from 'pager' and ({})"
    ).format(log_filter.where)
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = {row[0] for row in conn.execute(statement, {**log_filter.params, "project": tenant.project.project_id})}
    expected = {tenant.ids[i] for i, line in enumerate(LINES) if _model(tree, line)}
    assert found == expected, format_query(tree)


# --- pagination ----------------------------------------------------------------------------------------------


def test_pages_walk_newest_first_without_gaps_or_repeats(tenant: Tenant) -> None:
    # Given 130 lines, three per timestamp / When paging 50 at a time / Then every line once, by (time, id) desc
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        result = search(tenant, "service:pager", **params)
        assert result.status == 200, result.text
        seen += result.data
        cursor = result.json()["meta"]["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == PAGER_LINES == len({item["id"] for item in seen})
    keys = [(datetime.fromisoformat(item["time"]), int(item["id"])) for item in seen]
    assert keys == sorted(keys, reverse=True)
    # The same walk with a free-text query (the index path) gives the same lines
    text_walk: list[str] = []
    cursor = None
    while True:
        result = search(tenant, "page line", limit=40, **({"cursor": cursor} if cursor else {}))
        text_walk += [item["id"] for item in result.data]
        cursor = result.json()["meta"]["next_cursor"]
        if cursor is None:
            break
    assert text_walk == [item["id"] for item in seen]


def test_a_cursor_keeps_the_default_range_of_its_first_page(tenant: Tenant) -> None:
    # Given a first page with an explicit range / When the next page names only the cursor and `to`
    first = search(tenant, "service:pager", limit=100)
    cursor = first.json()["meta"]["next_cursor"]
    second = get(tenant.project.headers, tenant.path, q="service:pager", cursor=cursor, to=RANGE["to"])
    # Then the range starts where the first page's did (not at to - 1 h)
    assert len(second.data) == PAGER_LINES - 100


# --- histogram ---------------------------------------------------------------------------------------------------


def test_histogram_counts_levels_per_bucket(tenant: Tenant) -> None:
    # Given the lines of the first 90 s, one every 10 s / When asking for about 9 buckets of a 90 s range
    params = {"from": iso(BASE), "to": iso(BASE + timedelta(seconds=90)), "buckets": 9}
    result = get(tenant.project.headers, f"{tenant.path}/histogram", **params)
    assert result.status == 200, result.text
    data = result.data
    # Then 10 s buckets, one line each, counted under its level
    assert data["bucket_seconds"] == 10
    assert data["total"] == len(LINES)
    assert [b["total"] for b in data["buckets"]] == [1] * 9
    levels = [next(level for level, n in b["counts"].items() if n) for b in data["buckets"]]
    assert levels == ["error", "info", "error", "warn", "debug", "fatal", "info", "trace", "unspecified"]
    assert data["counts"] == {
        "unspecified": 1, "trace": 1, "debug": 1, "info": 2, "warn": 1, "error": 2, "fatal": 1,
    }  # fmt: skip
    # And the query filters the counts
    filtered = get(tenant.project.headers, f"{tenant.path}/histogram", q="payment", **params).data
    assert filtered["counts"]["error"] == 1 and filtered["counts"]["info"] == 1 and filtered["total"] == 3


def test_histogram_widths_are_round_and_buckets_cover_the_range(tenant: Tenant) -> None:
    result = get(tenant.project.headers, f"{tenant.path}/histogram", **RANGE)
    data = result.data
    # 61 minutes in at most 60 buckets: 2-minute buckets aligned to the epoch, empty ones included
    assert data["bucket_seconds"] == 120
    assert len(data["buckets"]) <= 60
    starts = [datetime.fromisoformat(b["start"]) for b in data["buckets"]]
    assert all(int(s.timestamp()) % 120 == 0 for s in starts)
    assert starts[0] <= datetime.fromisoformat(RANGE["from"].replace("Z", "+00:00")) < starts[0] + timedelta(minutes=2)
    assert data["total"] == len(LINES) + PAGER_LINES


# --- context -------------------------------------------------------------------------------------------------


def test_context_gives_the_lines_of_the_same_service_around_a_line(tenant: Tenant) -> None:
    # Given the api line "payment succeeded" (2nd) / When asking for its context
    result = get(tenant.project.headers, f"{tenant.path}/{tenant.ids[1]}/context", before=5, after=5)
    assert result.status == 200, result.text
    data = result.data
    # Then the api lines before and after it, oldest first (api-gateway is another service)
    assert data["log"]["body"] == "payment succeeded"
    assert [i["body"] for i in data["before"]] == ["payment failed for order 42"]
    assert [i["body"] for i in data["after"]] == ["timeouts are configurable"]
    # Bounded by before/after
    pager = search(tenant, "service:pager", limit=200).data
    middle = pager[60]["id"]
    around = get(tenant.project.headers, f"{tenant.path}/{middle}/context", before=4, after=2).data
    assert len(around["before"]) == 4 and len(around["after"]) == 2
    ordered = [*around["before"], around["log"], *around["after"]]
    keys = [(datetime.fromisoformat(i["time"]), int(i["id"])) for i in ordered]
    assert keys == sorted(keys)
    assert [i["id"] for i in ordered] == [i["id"] for i in reversed(pager[58:65])]


def test_context_of_a_line_without_service_stays_among_such_lines(tenant: Tenant) -> None:
    result = get(tenant.project.headers, f"{tenant.path}/{tenant.ids[4]}/context")
    data = result.data
    assert data["log"]["body"] == "failed payment retry"
    assert data["before"] == [] and data["after"] == []


# --- bad input -----------------------------------------------------------------------------------------------


def test_a_bad_query_is_a_400_naming_the_position(tenant: Tenant) -> None:
    for path in (tenant.path, f"{tenant.path}/histogram"):
        result = get(tenant.project.headers, path, q="payment (failed OR", **RANGE)
        assert result.status == 400
        assert result.error["code"] == "query_syntax_error"
        assert result.error["details"] == {"loc": ["query", "q"], "position": 18}
        assert "position 18" in result.error["message"]
    too_long = search(tenant, "a " * 1500)
    assert too_long.status == 400 and too_long.error["details"]["position"] == 2000


def test_bad_ranges_cursors_and_limits(tenant: Tenant) -> None:
    headers = tenant.project.headers
    backwards = get(headers, tenant.path, **{"from": RANGE["to"], "to": RANGE["from"]})
    assert backwards.status == 400 and backwards.error["code"] == "invalid_range"
    too_long = get(headers, tenant.path, **{"from": iso(NOW - timedelta(days=40)), "to": iso(NOW)})
    assert too_long.status == 400 and too_long.error["code"] == "range_too_long"
    histogram_too_long = get(headers, f"{tenant.path}/histogram", **{"from": iso(NOW - timedelta(days=40))})
    assert histogram_too_long.status == 400
    assert get(headers, tenant.path, **{"from": "yesterday"}).status == 422
    assert get(headers, tenant.path, cursor="not-a-cursor").status == 400
    assert get(headers, tenant.path, limit=0).status == 422
    assert get(headers, tenant.path, limit=201).status == 422
    assert get(headers, f"{tenant.path}/histogram", buckets=0).status == 422
    assert get(headers, f"{tenant.path}/histogram", buckets=501).status == 422
    assert get(headers, f"{tenant.path}/{tenant.ids[0]}/context", before=101).status == 422
    assert get(headers, f"{tenant.path}/abc/context").status == 422
    assert get(headers, f"{tenant.path}/0/context").status == 422
    assert get(headers, f"{tenant.path}/{2**63}/context").status == 422
    assert get(headers, f"{tenant.path}/999999999999/context").status == 404
    # Naive times are UTC
    naive = get(headers, tenant.path, q="card", **{"from": BASE.replace(tzinfo=None).isoformat(), "to": RANGE["to"]})
    assert bodies(naive) == ["card declined"]


# --- access ----------------------------------------------------------------------------------------------------


def _routes(tenant: Tenant, log_id: int) -> list[str]:
    return [tenant.path, f"{tenant.path}/histogram", f"{tenant.path}/{log_id}/context"]


def test_members_and_read_keys_read_every_route(tenant: Tenant) -> None:
    for headers in (tenant.owner.headers, tenant.viewer.headers, tenant.project.headers):
        for path in _routes(tenant, tenant.ids[0]):
            result = get(headers, path, **({} if path.endswith("context") else RANGE))
            assert result.status == 200, (path, result.text)
        assert matching_as(headers, tenant, "payment") == {
            "payment failed for order 42",
            "payment succeeded",
            "failed payment retry",
        }


def test_tenant_isolation_on_every_route(tenant: Tenant, stranger: tuple[User, IngestProject, int]) -> None:
    outsider, other, other_log = stranger
    # Given another organization's owner and key / Then our project's routes are 404 to them
    for headers in (outsider.headers, other.headers):
        for path in _routes(tenant, tenant.ids[0]):
            result = get(headers, path, **({} if path.endswith("context") else RANGE))
            assert result.status == 404, (path, result.text)
            assert "payment" not in result.text
    # And another project's log id under our project is a 404, for every caller of ours
    for headers in (tenant.owner.headers, tenant.project.headers):
        result = get(headers, f"{tenant.path}/{other_log}/context")
        assert result.status == 404
        assert "secret" not in result.text
    # And our search never returns their lines, even matching ones
    assert "payment failed secret" not in bodies(search(tenant, "secret OR payment", limit=200))


def test_keys_without_read_scope_and_anonymous_callers_are_refused(tenant: Tenant) -> None:
    ingest_only = add_key(tenant.project, ("ingest",))
    for path in _routes(tenant, tenant.ids[0]):
        refused = get(ingest_only.headers, path)
        assert refused.status == 403 and refused.error["code"] == "scope_missing"
        assert get({}, path).status == 401


# --- bounded searches: early pages with a cursor -----------------------------------------------------------------

WIDE_LINES = 12_000
RARE_EVERY = 2_500


@pytest.fixture(scope="module")
def wide(database_url: str) -> IngestProject:
    """12,000 lines one second apart (more than a scan window); every 2,500th is rare (5 of them)."""
    project = make_project(scopes=("read",), label="Wide")
    start = NOW - timedelta(hours=2) - timedelta(seconds=WIDE_LINES)
    _store(
        project,
        [
            LogRecord(
                time_ns=_ns(start + timedelta(seconds=i)),
                body=f"request {i} rare" if i % RARE_EVERY == 0 else f"request {i}",
                severity_number=9,
                service="api",
                attributes={"rare": i % RARE_EVERY == 0, "i": i},
            )
            for i in range(WIDE_LINES)
        ],
    )
    return project


def _walk(project: IngestProject, q: str, headers: dict[str, str] | None = None) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    params = {"from": iso(NOW - timedelta(hours=6)), "to": iso(NOW), "limit": 10}
    while True:
        result = get(headers or project.headers, f"/v1/projects/{project.project_id}/logs", q=q, **params, **(
            {"cursor": cursor} if cursor else {}
        ))  # fmt: skip
        assert result.status == 200, result.text
        pages.append(result.data)
        cursor = result.json()["meta"]["next_cursor"]
        if cursor is None:
            return pages


def test_a_spent_budget_ends_the_page_early_and_the_cursor_resumes(
    wide: IngestProject, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no time budget: one scan round per request
    monkeypatch.setenv("LOG_SEARCH_BUDGET_MS", "0")
    expected = [i for i in reversed(range(WIDE_LINES)) if i % RARE_EVERY == 0]
    # When searching a rare attribute (window by window) / Then pages end early, and the walk finds every match once
    pages = _walk(wide, "attributes.rare:true")
    assert len(pages) == 3
    assert [len(page) for page in pages] == [2, 2, 1]  # windows of 5,000 lines: 2, 2, then the last 2,000: 1
    assert [item["attributes"]["i"] for page in pages for item in page] == expected
    # And a rare word with another condition: one window, then the full-text index finds the rest at once
    [page] = _walk(wide, "rare -service:web")
    assert [item["attributes"]["i"] for item in page] == expected
    # And the index function applies a user's own policy: a viewer finds the same, an outsider nothing
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        viewer, outsider = make_user(db), make_user(db)
        add_membership(db, wide.org_id, viewer.id, "viewer")
    [page] = _walk(wide, "rare -service:web", viewer.headers)
    assert [item["attributes"]["i"] for item in page] == expected
    refused = get(outsider.headers, f"/v1/projects/{wide.project_id}/logs", q="rare")
    assert refused.status == 404


def test_with_time_enough_a_rare_value_fills_one_page(wide: IngestProject, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a generous budget (the default, 75 ms, may end a page early on a busy test machine)
    monkeypatch.setenv("LOG_SEARCH_BUDGET_MS", "10000")
    # When searching window by window / Then windows grow until the range is exhausted, in one request
    pages = _walk(wide, "attributes.rare:true")
    assert [[item["attributes"]["i"] for item in page] for page in pages] == [[10000, 7500, 5000, 2500, 0]]


@pytest.mark.parametrize("q", ["_", '"_ _"', "__*", "_a*", "a_*", "é*", "ß", "foo_bar*", '"a-b c.d"', "x\u0301"])
def test_odd_words_search_without_errors(
    tenant: Tenant, wide: IngestProject, q: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given words the text parser splits oddly or drops / When searched (window and index paths) / Then no 500
    monkeypatch.setenv("LOG_SEARCH_BUDGET_MS", "0")
    for path in (tenant.path, f"{tenant.path}/histogram"):
        result = search(tenant, q) if path == tenant.path else get(tenant.project.headers, path, q=q, **RANGE)
        assert result.status == 200, result.text
    # The wide project has more lines than a window: the full-text index function runs too
    wide_path = f"/v1/projects/{wide.project_id}/logs"
    result = get(wide.headers, wide_path, q=f"request {q}", **{"from": iso(NOW - timedelta(hours=6))})
    assert result.status == 200, result.text
