"""DDSketches merged in SQL, set-based: the aggregation job's sketches as rows of entries, never as Python objects.

A set of sketches is a table of entries ``(<key columns>, store, idx, n)``: store 'p' (positive values), 'n'
(|negative values|) or 'z' (zeros, idx 0), the bucket index, and its count. Merging sketches is adding counts per
(key, store, idx); an encoded sketch (``observai.metrics.sketch``: {"p": {...}, "n": {...}, "z": zeros}) becomes
entries with ``jsonb_each_text`` (``ENTRIES_OF``), and entries become the encoding again with ``BUILD`` (one text per
key, cast to jsonb once) after summing. Collapsing (each store keeps its top MAX_BUCKETS indexes, the lower ones
folded into top − MAX_BUCKETS + 1) depends only on each store's top index, so entries may be summed uncollapsed
(even mixed with stored, already collapsed sketches) and collapsed once, at the end: the sketch is the one
``merge_encoded`` gives. A store spanning MAX_BUCKETS indexes or more is rare (values 10^17 apart): ``BUILD`` flags
it (``OVERFLOW``) and ``collapse_overflowing`` rebuilds those few keys with the collapsing rule.

Why not Python: the aggregation job merged every 1m sketch of a run into its 5m sketch, and every series' sketch
into its groups', by parsing JSON and adding dicts: most of the job's time. In SQL the entries never leave the
server, and the sketches of the buckets a run recomputes stay entries from one level to the next (only the stored
sketches of buckets the run did not recompute are parsed).
"""

from __future__ import annotations

from observai.db.connection import Cursor
from observai.metrics.sketch import MAX_BUCKETS

# The encoded sketch of a group of entry rows (summed per store and index already: one row per (store, idx)).
BUILD = """('{"p":{' || coalesce(string_agg('"' || idx || '":' || n, ',') filter (where store = 'p'), '')
    || '},"n":{' || coalesce(string_agg('"' || idx || '":' || n, ',') filter (where store = 'n'), '')
    || '},"z":' || coalesce(sum(n) filter (where store = 'z'), 0) || '}')::jsonb"""

# True when a store of the group spans MAX_BUCKETS indexes or more: BUILD did not collapse it.
OVERFLOW = f"""coalesce(max(idx) filter (where store = 'p') - min(idx) filter (where store = 'p') >= {MAX_BUCKETS}
    or max(idx) filter (where store = 'n') - min(idx) filter (where store = 'n') >= {MAX_BUCKETS}, false)"""

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


def collapse_overflowing(cur: Cursor, *, entries: str, sketches: str, keys: tuple[str, ...]) -> None:
    """Rebuild, with the collapsing rule, the sketches of ``sketches`` flagged ``overflow`` from their entries in
    ``entries`` (both temp tables with the ``keys`` columns; sketches has columns sketch and overflow)."""
    cur.execute(f"select exists (select 1 from {sketches} where overflow) as any")
    row = cur.fetchone()
    if not (row and row["any"]):
        return
    on = " and ".join(f"e.{k} = s.{k}" for k in keys)
    key_list = ", ".join(keys)
    cur.execute(
        f"""
        update {sketches} s set sketch = x.sketch, overflow = false
        from (
            select {key_list}, {BUILD} as sketch
            from (
                select {key_list}, store, idx, sum(n)::bigint as n
                from (
                    select {", ".join(f"e.{k}" for k in keys)}, e.store, e.n,
                        greatest(e.idx, max(e.idx) over (partition by {", ".join(f"e.{k}" for k in keys)}, e.store)
                            - {MAX_BUCKETS - 1}) as idx
                    from {entries} e join {sketches} s on {on}
                    where s.overflow
                ) c
                group by {key_list}, store, idx
            ) d
            group by {key_list}
        ) x
        where {" and ".join(f"x.{k} = s.{k}" for k in keys)}
        """
    )
