"""``log``: the number of log lines matching a log query (the logs query language) in [eval_at - window, eval_at),
counted per group_by field: ``service``, ``severity`` (the level name: trace, debug, info, warn, error, fatal),
``attributes.<key>`` or ``resource.<key>`` (the flat, dotted key as ingested). One observation per combination
that has lines; with no group_by, one observation always (a count of 0 included)."""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import sql

from observai.alerts.kinds.base import Observation, compare
from observai.alerts.rule_models import LogCondition
from observai.db.connection import Cursor
from observai.errors import Unprocessable

MAX_GROUPS = 1000

_LEVEL = sql.SQL(
    "case when severity_number <= 0 then 'unspecified' when severity_number <= 4 then 'trace'"
    " when severity_number <= 8 then 'debug' when severity_number <= 12 then 'info'"
    " when severity_number <= 16 then 'warn' when severity_number <= 20 then 'error' else 'fatal' end"
)


def _field(field: str, params: dict[str, Any], index: int) -> sql.Composable:
    """The SQL of one group_by field over public.logs' unqualified columns (keys are bound parameters)."""
    if field == "service":
        return sql.SQL("service")
    if field == "severity":
        return _LEVEL
    column, key = field.split(".", 1)
    params[f"x_key{index}"] = key
    return sql.SQL("{} -> {}").format(sql.Identifier(column), sql.Placeholder(f"x_key{index}"))


def count_sql(condition: LogCondition, params: dict[str, Any]) -> sql.Composed:
    from observai.logs.query_language import compile_log_query

    log_filter = compile_log_query(condition.query)
    params.update(log_filter.params)
    fields = [_field(f, params, i) for i, f in enumerate(condition.group_by)]
    columns = [sql.SQL("{} as {}").format(f, sql.Identifier(f"g{i}")) for i, f in enumerate(fields)]
    grouped = sql.SQL(" group by {}").format(sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(fields))))
    return sql.SQL(
        "select {columns}count(*)::float8 as n from public.logs"
        " where project_id = %(x_project)s and time >= %(x_from)s and time < %(x_to)s and ({where}){grouped}"
        " limit %(x_cap)s"
    ).format(
        columns=sql.SQL("").join(sql.SQL("{}, ").format(c) for c in columns),
        where=log_filter.where,
        grouped=grouped if fields else sql.SQL(""),
    )


class LogKind:
    name = "log"

    def share_key(self, condition: LogCondition) -> Hashable:
        return (condition.query, tuple(condition.group_by), condition.window)

    def observe(self, cur: Cursor, project_id: UUID, condition: LogCondition, eval_at: datetime) -> list[Observation]:
        params: dict[str, Any] = {
            "x_project": project_id,
            "x_from": eval_at - timedelta(seconds=condition.window),
            "x_to": eval_at,
            "x_cap": MAX_GROUPS + 1,
        }
        cur.execute(count_sql(condition, params), params)
        rows = cur.fetchall()
        if len(rows) > MAX_GROUPS:
            raise Unprocessable(
                f"More than {MAX_GROUPS} {'/'.join(condition.group_by)} combinations have matching lines:"
                " group by fewer or coarser fields, or narrow the query",
                code="too_many_series",
                details={"loc": ["condition", "group_by"], "limit": MAX_GROUPS},
            )
        return [
            Observation({field: row[f"g{i}"] for i, field in enumerate(condition.group_by)}, row["n"]) for row in rows
        ]

    def judge(self, condition: LogCondition, observation: Observation) -> bool:
        return compare(observation.value, condition.op, condition.threshold)


KIND = LogKind()


def _register() -> None:
    from observai.alerts.kinds import register

    register(KIND)


_register()
