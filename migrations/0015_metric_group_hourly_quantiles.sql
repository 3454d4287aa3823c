-- The day's hourly quantiles on the 1d group rows: a week of p99 per host per hour (the dashboard's usual panel)
-- reads one row per group per whole day (the day's 24 hourly values) instead of 24 hourly rows.
--
-- hourly_pNN (1d rows only; null at 1m, 5m and 1h): 24 elements, element h (1-based: h + 1) the pNN of the same
-- group's 1h row of hour h of the day (UTC), null where that hour has no row (or a row without a sketch). The
-- aggregate-metrics job (observai.metrics.groups) recomputes them from the 1h rows whenever it rewrites the day's
-- 1d row, which it does whenever it rewrites one of the day's 1h rows (same chunk, same transaction): the arrays
-- are always the 1h rows' quantiles, late data and re-rolls included.
alter table public.metric_group_rollups
    add column hourly_p50 double precision[],
    add column hourly_p90 double precision[],
    add column hourly_p95 double precision[],
    add column hourly_p99 double precision[];

-- The existing 1d rows, from their day's 1h rows.
update public.metric_group_rollups d
set (hourly_p50, hourly_p90, hourly_p95, hourly_p99) = (
    select array_agg(h.p50 order by i), array_agg(h.p90 order by i), array_agg(h.p95 order by i),
        array_agg(h.p99 order by i)
    from generate_series(0, 23) i
    left join public.metric_group_rollups h
        on h.project_id = d.project_id and h.name = d.name and h.group_key = d.group_key
        and h.group_value = d.group_value and h.resolution = 3600
        and h.bucket_start = d.bucket_start + i * interval '1 hour'
)
where d.resolution = 86400;

-- The query API's read of whole days (observai.metrics.query): the 1d rows of one key over a range of days, an
-- index-only scan once autovacuum has marked the partition's pages all-visible (as the 1h rows' reads through
-- metric_group_rollups_key_resolution_bucket_idx, which leaves the arrays out: null but at 1d).
create index metric_group_rollups_daily_hourly_idx
    on public.metric_group_rollups (project_id, name, group_key, bucket_start)
    include (group_value, org_id, hourly_p50, hourly_p90, hourly_p95, hourly_p99)
    where resolution = 86400;
