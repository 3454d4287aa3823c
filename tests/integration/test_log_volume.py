"""The pre-aggregated log volume (migration 0014, observai.logs.volume): written by the ingest writer with the
lines (exactly once, retries and dedup included), compacted (idempotent, overlap-safe), read by the histogram
(equal to counting the lines, for any range and answerable query), purged by retention, closed to other
tenants. Lines go through the real write path (store_batch, the ingest route); Postgres is real."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from observai.db.connection import tenant_transaction
from observai.logs.query_language import compile_log_query
from observai.logs.volume import COMPACT_LOCK_KEY, compact_log_volume
from observai.retention.cleanup import run_cleanup
from observai.telemetry import usage
from observai.telemetry.model import Batch, LogRecord
from observai.telemetry.writer import clear_caches, store_batch

from tests.helpers.ingest import IngestProject, iso, log, make_project, post_native, span
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
SERVICES = ["api", "web", "db", "api-gateway", None]
LEVEL_NAMES = ("unspecified", "trace", "debug", "info", "warn", "error", "fatal")


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    usage.reset_caches()
    clear_caches()


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1_000


def record(at: datetime, severity: int = 9, service: str | None = "api", body: str = "line", **kw: Any) -> LogRecord:
    return LogRecord(time_ns=_ns(at), body=body, severity_number=severity, service=service, **kw)


def store(project: IngestProject, records: list[LogRecord]) -> int:
    """Through the writer, as the ingest route does; returns the duplicates it skipped."""
    result = store_batch(
        project.org_id, project.project_id, Batch(logs=records), idempotency_key=None, request_hash="t",
        response={}, body_bytes=0,
    )  # fmt: skip
    return result.duplicates


VOLUME_SQL = """
select minute, service, level, retention_days, sum(count)::bigint as n from (
    select minute, service, level, retention_days, count from public.log_volume where project_id = %(p)s
    union all
    select minute, service, level, retention_days, count from public.log_volume_rolled where project_id = %(p)s
) v group by 1, 2, 3, 4
"""
LINES_SQL = """
select date_bin('1 minute', time, timestamptz '2000-01-01 00:00:00+00') as minute, service,
       least((severity_number + 3) / 4, 6) as level, retention_days, count(*) as n
from public.logs where project_id = %(p)s group by 1, 2, 3, 4
"""


def _keyed(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
    return {(r["minute"], r["service"], r["level"], r["retention_days"]): int(r["n"]) for r in rows}


def volume(db: psycopg.Connection, project: IngestProject) -> dict[tuple[Any, ...], int]:
    return _keyed(db.execute(VOLUME_SQL, {"p": project.project_id}).fetchall())


def lines(db: psycopg.Connection, project: IngestProject) -> dict[tuple[Any, ...], int]:
    """What the volume must say: the stored lines counted per minute, service, level and retention."""
    return _keyed(db.execute(LINES_SQL, {"p": project.project_id}).fetchall())


def increments(db: psycopg.Connection, project: IngestProject) -> int:
    row = db.execute("select count(*) as n from public.log_volume where project_id = %s", (project.project_id,))
    return int(row.fetchone()["n"])  # type: ignore[index]


def histogram(headers: dict[str, str], project: IngestProject, **params: Any) -> Result:
    return invoke(
        "logs", "GET", f"/v1/projects/{project.project_id}/logs/histogram", headers=headers, query=urlencode(params)
    )


def counted(result: Result) -> dict[tuple[str, str], int]:
    """(bucket start, level) → count, the non-zero cells of a histogram response."""
    assert result.status == 200, result.text
    return {
        (datetime.fromisoformat(b["start"]).isoformat(), level): n
        for b in result.data["buckets"]
        for level, n in b["counts"].items()
        if n
    }


def reference(
    db: psycopg.Connection, project: IngestProject, q: str, start: datetime, end: datetime, width: int
) -> dict[tuple[str, str], int]:
    """The histogram by counting the matching lines (the row scan, as the superuser: no RLS, no shortcut)."""
    log_filter = compile_log_query(q)
    statement = psycopg.sql.SQL(
        "select date_bin(%(width)s, time, timestamptz '1970-01-01 00:00:00+00') as bucket,"
        " least((severity_number + 3) / 4, 6) as level, count(*) as n from public.logs"
        " where project_id = %(project)s and time >= %(start)s and time < %(end)s and ({}) group by 1, 2"
    ).format(log_filter.where)
    rows = db.execute(
        statement,
        {**log_filter.params, "width": timedelta(seconds=width), "project": project.project_id, "start": start,
         "end": end},
    ).fetchall()  # fmt: skip
    return {(r["bucket"].astimezone(UTC).isoformat(), LEVEL_NAMES[r["level"]]): int(r["n"]) for r in rows}


# --- writing ---------------------------------------------------------------------------------------------------------


def test_each_stored_line_is_counted_once_whatever_the_retries(db: psycopg.Connection) -> None:
    # Given lines over several minutes, services (and none) and levels, some with event ids
    project = make_project(scopes=("ingest", "read"), label="Volume")
    base = (NOW - timedelta(hours=1)).replace(second=0, microsecond=0)
    rng = random.Random(1)
    first = [
        record(base + timedelta(seconds=rng.uniform(0, 300)), rng.randrange(25), rng.choice(SERVICES),
               event_id=f"e{i}" if i % 2 else None)
        for i in range(300)
    ]  # fmt: skip
    # When stored, then the same batch re-sent with 50 new lines (a retry: dedup skips the stored event ids)
    assert store(project, first) == 0
    retried = first + [record(base + timedelta(seconds=i), 13, "web", event_id=f"new{i}") for i in range(50)]
    assert store(project, retried) == 150
    # And an ingest request replayed with its Idempotency-Key, and one re-sent without it
    events = [log(f"http {i}", at=base + timedelta(seconds=i), severity="error", event_id=f"h{i}") for i in range(5)]
    for key in ("k1", "k1", None):
        assert post_native(project.headers, events, idempotency_key=key).status == 202
    # Then the volume counts exactly the stored lines: 300 + 150 + 50 + 5
    stored = lines(db, project)
    assert sum(stored.values()) == 300 + 150 + 50 + 5
    assert volume(db, project) == stored
    # And it is small: one increment per request and key, never one per line
    assert increments(db, project) < 300


def test_a_write_retried_after_a_duplicate_span_counts_its_lines_once(db: psycopg.Connection) -> None:
    # Given a span already stored
    project = make_project(label="Volume")
    when = NOW - timedelta(minutes=10)
    stored_span = span("op", trace_id="ab" * 16, span_id="cd" * 8, start=when)
    assert post_native(project.headers, [stored_span]).status == 202
    # When new lines arrive with that span again: the first attempt writes the lines and their volume, then the
    # span's dedup index refuses it, and the whole transaction is written again carefully
    events = [log(f"new {i}", at=when + timedelta(seconds=i), severity="warn") for i in range(7)]
    result = post_native(project.headers, [*events, stored_span])
    assert result.status == 202 and result.data["duplicates"] == 1
    # Then the lines are counted once
    assert sum(volume(db, project).values()) == 7
    assert volume(db, project) == lines(db, project)


# --- compaction ------------------------------------------------------------------------------------------------------


def test_compaction_merges_increments_into_one_row_per_key_and_is_idempotent(db: psycopg.Connection) -> None:
    # Given three batches hitting the same minutes, services and levels
    project = make_project(label="Volume")
    base = (NOW - timedelta(hours=2)).replace(second=0, microsecond=0)
    for _ in range(3):
        store(project, [record(base + timedelta(seconds=s), sev, svc) for s in (1, 61) for sev in (9, 17) for svc in
                        ("api", None)])  # fmt: skip
    before = volume(db, project)
    assert increments(db, project) == 3 * 8
    # When compacted
    assert compact_log_volume() >= 24
    # Then one rolled row per key, the same counts, no increment left
    assert increments(db, project) == 0
    rolled = db.execute(
        "select count(*) as n from public.log_volume_rolled where project_id = %s", (project.project_id,)
    ).fetchone()
    assert rolled["n"] == len(before) == 8
    assert volume(db, project) == before == lines(db, project)
    # And again: nothing to do, nothing changes
    compact_log_volume()
    assert volume(db, project) == before
    # And new increments for the same keys are added to the rolled rows
    store(project, [record(base + timedelta(seconds=1), 9, None)])
    compact_log_volume()
    assert volume(db, project) == lines(db, project)
    assert sum(volume(db, project).values()) == 25


def test_a_compaction_stops_while_another_holds_the_lock(database_url: str, db: psycopg.Connection) -> None:
    project = make_project(label="Volume")
    store(project, [record(NOW - timedelta(minutes=5))])
    # Given another run holding the lock / When compacting / Then nothing moves
    with psycopg.connect(database_url) as other, other.transaction():
        other.execute("select pg_advisory_xact_lock(%s)", (COMPACT_LOCK_KEY,))
        assert compact_log_volume() == 0
        assert increments(db, project) == 1
    # And once released, it does
    assert compact_log_volume() >= 1
    assert increments(db, project) == 0


def test_compactions_overlapping_with_writes_never_lose_nor_double_a_line(
    db: psycopg.Connection, database_url: str
) -> None:
    # Given two compactions looping in their own processes (as two Lambda invocations would) for a while
    project = make_project(label="Volume")
    base = (NOW - timedelta(minutes=30)).replace(second=0, microsecond=0)
    script = (
        "import sys, time; from observai.logs.volume import compact_log_volume;"
        "end = time.monotonic() + float(sys.argv[1]);"
        "n = 0\n"
        "while time.monotonic() < end: n += compact_log_volume(max_rows=50)\n"
        "print(n)"
    )
    env = {**os.environ, "DATABASE_URL": database_url}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, "4"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    try:
        # When the writer stores lines meanwhile
        rng = random.Random(2)
        for _ in range(40):
            store(project, [record(base + timedelta(seconds=rng.uniform(0, 180)), rng.randrange(25),
                                   rng.choice(SERVICES)) for _ in range(40)])  # fmt: skip
        merged = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            merged.append(int(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    # Then both ran, and once the last increments are compacted every line is counted exactly once
    assert sum(merged) > 0
    compact_log_volume()
    assert sum(volume(db, project).values()) == 1600
    assert volume(db, project) == lines(db, project)


# --- reading: the histogram ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spread(database_url: str) -> tuple[IngestProject, datetime]:
    """A project with 1,500 lines over 3 h: random times (some exactly on minute boundaries), services and
    severities, stored in 15 batches, half of the increments compacted."""
    usage.reset_caches()
    project = make_project(scopes=("read",), label="Spread")
    base = (NOW - timedelta(hours=4)).replace(second=0, microsecond=0)
    rng = random.Random(3)
    for batch in range(15):
        records = []
        for i in range(100):
            at = base + timedelta(seconds=rng.uniform(0, 3 * 3600))
            if i % 10 == 0:
                at = at.replace(second=0, microsecond=0)  # on a minute boundary
            records.append(record(at, rng.randrange(25), rng.choice(SERVICES), body=rng.choice(["ok", "slow query"]),
                                  attributes={"n": i % 3}))  # fmt: skip
        store(project, records)
        if batch == 7:
            compact_log_volume()
    return project, base


QUERIES = [
    "", "service:api", "-service:api", "service:api*", "service:*", "-service:*", "severity:error", "level:warn",
    "severity>=warn", "severity<info", "severity:*", "severity:unspecified", "service:web severity>warn",
    "service:db OR severity:fatal", "NOT (service:api OR level:debug)",
    '(service:"api-gateway" -level:info) OR level:trace',
    # not answerable from the volume: counted from the lines
    "severity:18", "severity>14", "attributes.n:1", "-slow severity:error", "slow service:api*",
    # free text, alone or AND-ed with services and levels: counted through the full-text index
    "slow", "service:api slow", "slow OR ok", '"slow query" level:info -service:db', "slo*", "body:ok severity>=warn",
    # a word without a token: no line matches it, whatever an OR or AND of tsqueries would make of it
    "_ slow", "(_ slow) OR ok", "__* OR slow",
]  # fmt: skip


def test_the_histogram_equals_counting_the_lines_for_any_range_and_query(
    spread: tuple[IngestProject, datetime], db: psycopg.Connection
) -> None:
    project, base = spread
    rng = random.Random(4)
    for _ in range(80):
        # Given a range with odd edges (seconds, microseconds, or whole minutes) and a number of buckets
        start = base + timedelta(seconds=rng.uniform(-600, 3 * 3600))
        end = start + timedelta(seconds=rng.uniform(30, 3 * 3600))
        if rng.random() < 0.3:
            start, end = start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0)
        q = rng.choice(QUERIES)
        buckets = rng.choice([1, 3, 12, 60, 200])
        # When asking for the histogram
        result = histogram(project.headers, project, q=q, buckets=buckets, **{"from": iso(start), "to": iso(end)})
        # Then it is exactly the count of the matching lines per bucket and level
        width = result.data["bucket_seconds"]
        assert counted(result) == reference(db, project, q, start, end, width), (q, start, end, width)
        assert result.data["total"] == sum(reference(db, project, q, start, end, width).values())


def test_edges_count_lines_at_the_very_start_and_not_at_the_end(db: psycopg.Connection) -> None:
    # Given lines exactly at from, just before it, just before to, exactly at to, and mid-minute
    project = make_project(scopes=("read",), label="Edges")
    start = (NOW - timedelta(hours=1)).replace(second=0, microsecond=0) + timedelta(seconds=30)
    end = start + timedelta(minutes=10)
    tiny = timedelta(microseconds=1)
    times = [start - tiny, start, start + timedelta(seconds=29), start + timedelta(seconds=30), end - tiny, end]
    store(project, [record(at, 17, "api") for at in times])
    compact_log_volume()
    # When the histogram covers [start, end) in 1-minute buckets (no query, and a service filter)
    for q in ("", "service:api", "level:error"):
        result = histogram(project.headers, project, q=q, buckets=10, **{"from": iso(start), "to": iso(end)})
        # Then the line at from counts, the one at to does not, nor the one just before from
        assert result.data["bucket_seconds"] == 60
        assert result.data["total"] == 4
        assert counted(result) == reference(db, project, q, start, end, 60)


def test_answerable_queries_read_the_volume_and_the_others_the_lines(db: psycopg.Connection) -> None:
    # Given lines in whole minutes, then the lines of those minutes removed behind the volume's back
    project = make_project(scopes=("read",), label="Paths")
    base = (NOW - timedelta(hours=2)).replace(second=0, microsecond=0)
    store(project, [record(base + timedelta(seconds=s), 17, "api", body="boom") for s in range(0, 600, 5)])
    db.execute("delete from public.logs where project_id = %s", (project.project_id,))
    window = {"from": iso(base), "to": iso(base + timedelta(minutes=10)), "buckets": 10}
    # When asking service/level histograms / Then they come from the volume (the lines are gone)
    for q in ("", "service:api", "severity>=warn -service:web"):
        assert histogram(project.headers, project, q=q, **window).data["total"] == 120
    # And free text, attributes and partial levels are counted from the lines
    for q in ("boom", "severity:17", "attributes.x:1"):
        assert histogram(project.headers, project, q=q, **window).data["total"] == 0
    # And narrow buckets (under a minute) too
    assert histogram(project.headers, project, **{**window, "buckets": 500}).data["total"] == 0


def test_a_count_past_its_budget_is_a_422_asking_for_a_narrower_range(
    db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 20,000 lines and a histogram budget of 1 ms
    project = make_project(scopes=("read",), label="Budget")
    base = (NOW - timedelta(hours=2)).replace(second=0, microsecond=0)
    for chunk in range(4):
        store(project, [record(base + timedelta(seconds=chunk * 1000 + i / 5), 9, "api", body=f"request {i} done")
                        for i in range(5000)])  # fmt: skip
    window = {"from": iso(base), "to": iso(base + timedelta(hours=1, minutes=30))}
    monkeypatch.setenv("LOG_HISTOGRAM_BUDGET_MS", "1")
    # When counting free text over the range
    refused = histogram(project.headers, project, q="done", **window)
    # Then a 422 that says what to do (never a 503)
    assert refused.status == 422, refused.text
    assert refused.error["code"] == "histogram_range_too_broad"
    assert "narrow the time range" in refused.error["message"]
    assert refused.error["details"]["budget_ms"] == 1
    # And with the default budget the same count is answered
    monkeypatch.delenv("LOG_HISTOGRAM_BUDGET_MS")
    assert histogram(project.headers, project, q="done", **window).data["total"] == 20_000


# --- retention -------------------------------------------------------------------------------------------------------


def test_retention_purges_the_volume_of_expired_lines_with_them(db: psycopg.Connection) -> None:
    # Given a free-plan project (warn+ 7 days, info 3, debug 1) with lines on days today-0, -2, -5, -10 of a far
    # "today" (in years no other test uses: test_partitions 2060-2079, test_retention 2090 on), partly compacted
    today = date(2081, 1, 1) + timedelta(days=random.randrange(0, 8 * 365))
    ages = (0, 2, 5, 10)
    db.execute("select private.ensure_daily_partitions('public.logs', %s, %s)", (today - timedelta(days=10), today))
    project = make_project(label="Volume retention")
    for k in ages:
        noon = datetime(today.year, today.month, today.day, 12, tzinfo=UTC) - timedelta(days=k)
        store(project, [record(noon + timedelta(seconds=s), sev, "api") for s in (0, 90) for sev in (5, 9, 17)])
        if k == 5:
            compact_log_volume()
    assert sum(volume(db, project).values()) == len(ages) * 6
    # When the retention job runs for that day
    report = run_cleanup(today=today, since=today - timedelta(days=10), max_drops=1000)
    # Then the volume of expired lines is gone (a day today-k kept R days expires when k > R), the rest kept,
    # and it still equals the lines that remain
    kept = {((today - key[0].astimezone(UTC).date()).days, key[3]) for key in volume(db, project)}
    assert kept == {(k, r) for k in ages for r in (1, 3, 7) if k <= r}
    assert volume(db, project) == lines(db, project)
    assert report.log_volume_rows_purged >= 1
    # And the purge is audited
    audited = db.execute(
        "select target_id from public.audit_log where action = 'retention.rows_purged'"
        " and target_id in ('public.log_volume', 'public.log_volume_rolled') and details ->> 'today' = %s",
        (today.isoformat(),),
    ).fetchall()
    assert {row["target_id"] for row in audited} == {"public.log_volume", "public.log_volume_rolled"}
    # And a second run finds nothing more
    assert run_cleanup(today=today, since=today - timedelta(days=10)).log_volume_rows_purged == 0


# --- tenant isolation ------------------------------------------------------------------------------------------------


def test_volume_rows_are_visible_to_their_tenant_only(db: psycopg.Connection, database_url: str) -> None:
    # Given two organizations' projects with volume in both tables
    mine, theirs = make_project(scopes=("read",), label="Mine"), make_project(scopes=("read",), label="Theirs")
    at = (NOW - timedelta(hours=1)).replace(second=0, microsecond=0)
    for project in (mine, theirs):
        store(project, [record(at, 17, "api")])
    compact_log_volume()
    for project in (mine, theirs):
        store(project, [record(at + timedelta(seconds=1), 17, "api")])
    member = make_user(db)
    add_membership(db, mine.org_id, member.id, "viewer")
    key_claims = {
        "role": "authenticated",
        "api_key": {"id": str(mine.key_id), "org_id": str(mine.org_id), "project_id": str(mine.project_id),
                    "scopes": ["read"]},
    }  # fmt: skip
    user_claims = {"sub": str(member.id), "role": "authenticated", "aud": "authenticated"}
    # When a member and the project's key read the tables under RLS, asking for both projects
    for claims in (user_claims, key_claims):
        with tenant_transaction(claims) as cur:
            for table in ("log_volume", "log_volume_rolled"):
                cur.execute(
                    f"select distinct project_id from public.{table} where project_id = any(%s)",
                    ([mine.project_id, theirs.project_id],),
                )
                # Then only their own project's rows
                assert {row["project_id"] for row in cur.fetchall()} == {mine.project_id}, (table, claims)
    # And the free-text histogram function, called for the other project, counts nothing of it
    for claims in (user_claims, key_claims):
        with tenant_transaction(claims) as cur:
            cur.execute(
                "select count(*) as n from private.log_text_histogram(%s, to_tsquery('simple', 'line'), %s, %s,"
                " interval '1 minute')",
                (theirs.project_id, at - timedelta(hours=1), at + timedelta(hours=1)),
            )
            assert cur.fetchone()["n"] == 0
            cur.execute(
                "select sum(n) as n from private.log_text_histogram(%s, to_tsquery('simple', 'line'), %s, %s,"
                " interval '1 minute')",
                (mine.project_id, at - timedelta(hours=1), at + timedelta(hours=1)),
            )
            assert cur.fetchone()["n"] == 2
    # And the histogram of the other project is refused to this key; the own one counts its 2 lines
    window = {"from": iso(at - timedelta(minutes=5)), "to": iso(at + timedelta(minutes=5))}
    assert histogram(mine.headers, theirs, **window).status in (403, 404)
    assert histogram(mine.headers, mine, **window).data["total"] == 2
