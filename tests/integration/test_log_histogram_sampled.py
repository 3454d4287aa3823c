"""The free-text log histogram of a query matching very many lines: an estimate from an even sample of each
bucket's time, said to be one (exact: false), close to counting the lines; rarer words stay exact."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from observai.logs.search import (
    MAX_SAMPLE_FRACTION,
    SAMPLE_ABOVE,
    SAMPLE_LINES,
    SAMPLE_SLICES,
    TimeRange,
    sample_fraction,
    sample_slices,
)

from tests.helpers.ingest import IngestProject, iso, make_project
from tests.integration.test_log_volume import NOW, counted, histogram, reference

pytestmark = pytest.mark.integration

LINES = 48_000
# Every line but one in ten says "timeout"; one in 2,000 also says "declined" (24 lines).
LOAD_SQL = """
insert into public.logs (org_id, project_id, time, severity_number, service, body, retention_days)
select %(org)s, %(project)s, %(start)s::timestamptz + (i * %(step)s::float8) * interval '1 second',
       case when i %% 3 = 0 then 17 else 9 end, 'api',
       case when i %% 10 = 0 then 'all good' else 'upstream timeout after ' || i || ' ms' end
       || case when i %% 2000 = 7 then ' card declined' else '' end,
       30
from generate_series(0, %(n)s - 1) as i
"""


@pytest.fixture(scope="module")
def busy(database_url: str) -> tuple[IngestProject, object, object]:
    project = make_project(scopes=("read",), label="Busy")
    start = (NOW - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=2)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            LOAD_SQL,
            {"org": project.org_id, "project": project.project_id, "start": start, "step": 7200 / LINES, "n": LINES},
        )
        conn.execute("analyze public.logs")  # the planner's estimate of the matching lines comes from its statistics
    return project, start, end


def test_slices_cover_an_even_share_of_each_bucket() -> None:
    # Given a 2 h range cut into 30-minute buckets, its first one partly outside the range
    first = NOW.replace(minute=0, second=0, microsecond=0)
    window = TimeRange(first + timedelta(minutes=10), first + timedelta(hours=2))
    # When the sample is drawn
    sample = sample_slices(first, 1800, window)
    # Then each full bucket has SAMPLE_SLICES slices inside it and the range, 1/SAMPLE_EVERY of its time
    for lo, hi, bucket in zip(sample.starts, sample.ends, sample.buckets, strict=True):
        assert bucket <= lo < hi <= bucket + timedelta(seconds=1800)
        assert window.start <= lo and hi <= window.end
    assert sample.buckets.count(first + timedelta(minutes=30)) == SAMPLE_SLICES
    assert sample.scale[first + timedelta(minutes=30)] == pytest.approx(1 / MAX_SAMPLE_FRACTION)
    # and the clipped first bucket is scaled by its time in the range over its sampled time
    sampled = sum((hi - lo for lo, hi, b in zip(sample.starts, sample.ends, sample.buckets, strict=True)
                   if b == first), timedelta(0))  # fmt: skip
    assert sample.scale[first] == pytest.approx(timedelta(minutes=20) / sampled)


def test_a_longer_range_is_sampled_thinner_to_read_about_the_same_lines() -> None:
    assert sample_fraction(1_000) == MAX_SAMPLE_FRACTION
    assert sample_fraction(SAMPLE_LINES / MAX_SAMPLE_FRACTION) == pytest.approx(MAX_SAMPLE_FRACTION)
    assert sample_fraction(100_000_000) == pytest.approx(SAMPLE_LINES / 100_000_000)
    first = NOW.replace(minute=0, second=0, microsecond=0)
    sample = sample_slices(first, 3600, TimeRange(first, first + timedelta(hours=5)), 0.01)
    assert sample.fraction == 0.01
    assert all(scale == pytest.approx(100) for scale in sample.scale.values())


def test_a_word_in_most_lines_is_estimated_and_says_so(busy: tuple[IngestProject, object, object], db: object) -> None:
    project, start, end = busy
    # When the histogram of a word in 90 % of the lines is asked for (over SAMPLE_ABOVE lines)
    result = histogram(project.headers, project, q="timeout", buckets=12, **{"from": iso(start), "to": iso(end)})
    # Then it is an estimate, and says so
    assert result.status == 200, result.text
    assert result.data["exact"] is False
    assert result.data["sample_fraction"] == pytest.approx(MAX_SAMPLE_FRACTION)
    # and it is close to counting the lines: each bucket and level within 5 %, the total within 2 %
    want = reference(db, project, "timeout", start, end, result.data["bucket_seconds"])  # type: ignore[arg-type]
    got = counted(result)
    assert sum(want.values()) > SAMPLE_ABOVE
    assert set(got) == set(want)
    for cell, n in want.items():
        assert got[cell] == pytest.approx(n, rel=0.05), cell
    assert result.data["total"] == pytest.approx(sum(want.values()), rel=0.02)


@pytest.mark.parametrize("q", ["declined", "declined service:api", '"card declined"', "good severity>=error"])
def test_rarer_words_are_counted_exactly(busy: tuple[IngestProject, object, object], db: object, q: str) -> None:
    project, start, end = busy
    # When the histogram of words in few lines (or a tenth of them) is asked for
    result = histogram(project.headers, project, q=q, buckets=12, **{"from": iso(start), "to": iso(end)})
    # Then it is exact: the count of the matching lines
    assert result.status == 200, result.text
    assert result.data["exact"] is True and result.data["sample_fraction"] is None
    assert counted(result) == reference(db, project, q, start, end, result.data["bucket_seconds"])  # type: ignore[arg-type]
