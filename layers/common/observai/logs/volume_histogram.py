"""Reading the pre-aggregated log volume (observai.logs.volume): the histogram answers from it when the query only
names services and whole levels (``volume_filter``) and buckets are whole minutes (``VOLUME_HISTOGRAM_SQL``).
"""

from __future__ import annotations

import operator
from typing import Any

from psycopg import sql

from observai.logs.query_language import FieldTerm, LogSqlCompiler, Node, severity_range

MAX_SEVERITY = 24

# The histogram's level classes, as in SQL least((severity_number + 3) / 4, 6): 0 = unspecified, 1..6 = trace..fatal.
LEVEL_SEVERITIES: tuple[frozenset[int], ...] = tuple(
    frozenset(range(4 * level - 3, 4 * level + 1)) if level else frozenset({0}) for level in range(7)
)


class _NotAnswerable(Exception):
    """The query names something the volume does not keep (text, attributes, ids, part of a level)."""


def _severities(term: FieldTerm) -> frozenset[int]:
    """The severity numbers (0..24) a severity term matches, as the log query compiler's condition does."""
    if term.value is None:
        return frozenset(range(1, MAX_SEVERITY + 1))  # severity:* is severity_number > 0
    found = severity_range(term.value)
    assert found is not None  # checked when parsed
    low, high = found
    numbers = range(MAX_SEVERITY + 1)
    if term.op == ":":
        return frozenset(n for n in numbers if low <= n <= high)
    bound = {">": high, ">=": low, "<": low, "<=": high}[term.op]
    compare = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[term.op]
    return frozenset(n for n in numbers if compare(n, bound))


class _VolumeCompiler(LogSqlCompiler):
    """The log query compiled over log_volume's columns (service, level); raises _NotAnswerable otherwise.

    Service terms compile exactly as over public.logs (same column, same values, NULL for no service), so a
    volume row matches exactly when each line it counts does. A severity term is answerable when it takes or
    leaves each level class whole (``error``, ``>=warn``, ``:*``); ``severity:18`` is not.
    """

    def bind(self, value: object) -> sql.Placeholder:
        name = f"lv{len(self.params)}"  # not lq…: the edge scan of public.logs binds the log filter's own
        self.params[name] = value
        return sql.Placeholder(name)

    def text(self, value: str, quoted: bool, prefix: bool) -> sql.Composable:
        raise _NotAnswerable

    def field(self, term: FieldTerm) -> sql.Composable:
        if term.field == "service":
            return super().field(term)
        if term.field == "severity":
            return self.severity(term)
        raise _NotAnswerable

    def severity(self, term: FieldTerm) -> sql.Composable:
        matched = _severities(term)
        levels = []
        for level, severities in enumerate(LEVEL_SEVERITIES):
            inside = severities & matched
            if inside and inside != severities:
                raise _NotAnswerable
            if inside:
                levels.append(level)
        return sql.SQL("(level = any({}::smallint[]))").format(self.bind(levels))


def volume_filter(node: Node | None) -> tuple[sql.Composable, dict[str, Any]] | None:
    """The query as a condition over log_volume(service, level), or None when the volume cannot answer it."""
    if node is None:
        return sql.SQL("true"), {}
    compiler = _VolumeCompiler()
    try:
        where = compiler.node(node)
    except _NotAnswerable:
        return None
    return where, dict(compiler.params)


# Whole minutes [vstart, vend) from the volume (compacted + increments, one snapshot), the partial minutes at
# either edge ([start, vstart) and [vend, end)) counted from the lines themselves: exact for any range.
VOLUME_HISTOGRAM_SQL = """
select date_bin(%(width)s, v.minute, %(origin)s) as bucket, v.level, sum(v.count)::bigint as n
from (
    select minute, service, level, count from public.log_volume_rolled
    where project_id = %(project)s and minute >= %(vstart)s and minute < %(vend)s
    union all
    select minute, service, level, count from public.log_volume
    where project_id = %(project)s and minute >= %(vstart)s and minute < %(vend)s
) v
where ({volume_where})
group by 1, 2
union all
select date_bin(%(width)s, time, %(origin)s), least((severity_number + 3) / 4, 6), count(*) from public.logs
where project_id = %(project)s and time >= %(start)s and time < %(vstart)s and ({where})
group by 1, 2
union all
select date_bin(%(width)s, time, %(origin)s), least((severity_number + 3) / 4, 6), count(*) from public.logs
where project_id = %(project)s and time >= %(vend)s and time < %(end)s and ({where})
group by 1, 2
"""
