-- metric_group_rollups: the primary key in the order its readers range over (a key's values at one resolution
-- over a range of buckets: the query API, the job's coarser re-rolls), and the covering index without the 1m rows.
--
-- Most group rows are 1m rows (issue 17: the roll-ups must keep up with ingestion). Keeping them in the covering
-- index (14 included columns) was about a fifth of the group stage's server time; a query at a 1m step reads at most
-- 11,000 slots per value (the query API's limit), for which a primary-key range read and a heap fetch per row is a
-- few milliseconds. The coarser rows (5m, 1h, 1d: the dashboards over days and weeks) keep their index-only scans.
alter table public.metric_group_rollups drop constraint metric_group_rollups_pkey;
alter table public.metric_group_rollups
    add primary key (project_id, name, group_key, resolution, bucket_start, group_value);

drop index if exists public.metric_group_rollups_key_resolution_bucket_idx;
create index metric_group_rollups_key_resolution_bucket_idx
    on public.metric_group_rollups (project_id, name, group_key, resolution, bucket_start)
    include (group_value, org_id, series, count, sum, min, max, last, last_time, increase, p50, p90, p95, p99)
    where resolution <> 60;
