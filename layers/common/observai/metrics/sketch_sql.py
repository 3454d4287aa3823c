"""An encoded DDSketch read as rows of entries in SQL: what the aggregation job parses in Postgres.

An encoded sketch (``observai.metrics.sketch``: {"p": {...}, "n": {...}, "z": zeros}) becomes rows
``(store, idx, n)``: store 'p' (positive values), 'n' (|negative values|) or 'z' (zeros, idx 0), the bucket index,
and its count. Merging sketches is adding counts per (store, idx), then collapsing each store below its top index;
the job does that in numpy (``observai.metrics.rollup_pass.sum_entries``) on entries read with ``entries_of``: a
histogram's stored 1m sketch for the run's entries (``rollup_e1``), and the stored per-series sketches the group
step reads.
"""

from __future__ import annotations

from observai.metrics.sketch import LOG_GAMMA, ZERO_THRESHOLD

# The entries of the encoded sketch column ``{alias}.sketch`` (a lateral join; no row for a null sketch).
ENTRIES_OF = """cross join lateral (
    select s.store, k.key::integer as idx, k.value::bigint as n
    from (values ('p', {alias}.sketch -> 'p'), ('n', {alias}.sketch -> 'n')) as s(store, obj)
    cross join lateral jsonb_each_text(s.obj) as k
    union all
    select 'z', 0, ({alias}.sketch ->> 'z')::bigint where ({alias}.sketch ->> 'z')::bigint > 0
) as {entry}"""


def entries_of(alias: str, entry: str = "k") -> str:
    return ENTRIES_OF.format(alias=alias, entry=entry)


def one_value(alias: str) -> str:
    """SQL, never null: the rollup row ``{alias}`` is a minute of one finite gauge value (count 1, no increase, a
    finite min), whose sketch is that value's one entry (at 1m the job stores none: ``rollup_pass.one_value``, the
    same rule on its arrays)."""
    return (
        f"({alias}.count = 1 and {alias}.increase is null and {alias}.min is not null"
        f" and abs({alias}.min) < 'Infinity'::float8)"
    )


def sketch_text(alias: str) -> str:
    """The encoded sketch of the rollup row ``{alias}`` as JSON text: the stored one, else, for a 1m row of one
    finite gauge value (``one_value``), that value's one entry by ``Sketch.add``'s rule (Postgres' ``ln`` is the C
    library's ``log``, as Python's ``math.log``)."""
    value = f"{alias}.min"
    index = f"ceil(ln(abs({value})) / {LOG_GAMMA!r})::integer"
    return (
        f"coalesce({alias}.sketch::text, case when {alias}.resolution = 60 and {one_value(alias)} then case"
        f""" when abs({value}) < {ZERO_THRESHOLD!r} then '{{"p":{{}},"n":{{}},"z":1}}'"""
        f""" when {value} > 0 then '{{"p":{{"' || {index} || '":1}},"n":{{}},"z":0}}'"""
        f""" else '{{"p":{{}},"n":{{"' || {index} || '":1}},"z":0}}' end end)"""
    )
