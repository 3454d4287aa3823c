-- Group rollups (what recording rules are to Prometheus): cross-series rollups per metric name, maintained by the
-- aggregate-metrics job (observai.metrics.rollup) next to the per-series ones, so a dashboard query over every
-- series of a metric, or grouped by one low-cardinality attribute, reads one row per group per slot.

------------------------------------------------------------------------------------------------
-- One row per (metric name, group, resolution, bucket), partitioned by day of bucket_start like metric_rollups.
--
-- group_key '' and group_value '': every series of the metric. Otherwise group_key is an attribute key and
-- group_value the attribute's value as jsonb text ((attributes -> group_key)::text: '"h01"', '200', 'true'),
-- or 'null' for the series without the attribute (the query API labels those null too).
-- series: how many series contributed (1m: exactly; coarser: the most of any finer bucket).
-- count, sum, min, max, increase, sketch: as metric_rollups, over the group's series; last/last_time: the
-- latest value of the group (simultaneous values: the largest, as the query API's "last").
create table public.metric_group_rollups (
    org_id uuid not null,
    project_id uuid not null,
    name text not null,
    group_key text not null,
    group_value text not null,
    resolution integer not null check (resolution in (60, 300, 3600, 86400)),  -- seconds
    bucket_start timestamptz not null,
    series integer not null,
    count bigint not null,
    sum double precision,
    min double precision,
    max double precision,
    last double precision,
    last_time timestamptz,
    increase double precision,
    sketch jsonb,
    -- 1h and 1d rows: the sketch's p50/p90/p95/p99 (observai.metrics.sketch.Sketch.quantile of this row's sketch),
    -- so a query whose step is the resolution reads one number per slot instead of decoding the sketch.
    -- Null at 1m and 5m (a query there merges the group sketches, few per slot).
    p50 double precision,
    p90 double precision,
    p95 double precision,
    p99 double precision,
    updated_at timestamptz not null default now(),
    primary key (project_id, name, group_key, group_value, resolution, bucket_start)
) partition by range (bucket_start);
-- The query API and the job's coarser re-rolls read every value of one key over a range of buckets. The index
-- covers every column a query reads but the sketch (org_id: the RLS policy): once autovacuum has marked a
-- partition's pages all-visible (soon after its day is rolled up), a dashboard's scan of thousands of group rows
-- (p99 per host per hour over a week) is an index-only scan of a few dozen pages, not a heap fetch per row.
create index metric_group_rollups_key_resolution_bucket_idx
    on public.metric_group_rollups (project_id, name, group_key, resolution, bucket_start)
    include (group_value, org_id, series, count, sum, min, max, last, last_time, increase, p50, p90, p95, p99);

create table public.metric_group_rollups_default partition of public.metric_group_rollups default;
alter table public.metric_group_rollups_default enable row level security;
revoke all on public.metric_group_rollups_default from public, anon, authenticated;

select private.ensure_daily_partitions(
    'public.metric_group_rollups'::regclass, (now() at time zone 'UTC')::date - 8, (now() at time zone 'UTC')::date + 3
);

------------------------------------------------------------------------------------------------
-- The groups the job maintains per metric: '' (every series) and the attribute keys of at most 200 distinct
-- values (at most 16 per metric). complete_from: group rows of buckets starting at or after it are complete
-- ('-infinity' when the group was maintained from the metric's first rollup); the query API reads group rows
-- only for ranges starting there or later. A key whose cardinality grows past the bound is removed.
create table public.metric_group_keys (
    org_id uuid not null,
    project_id uuid not null,
    name text not null,
    group_key text not null,
    cardinality integer not null,
    complete_from timestamptz not null,
    updated_at timestamptz not null default now(),
    primary key (project_id, name, group_key)
);

------------------------------------------------------------------------------------------------
-- The group step's work queue: (metric, 1-minute bucket) pairs whose per-series rollups changed and whose group
-- rows are not recomputed yet. The job adds the pairs it touches and works the queue off in bounded chunks (oldest
-- minutes first), so its group step never outgrows a run; what is left is resumed by the next run. The query API
-- reads group rows only for ranges without a pending minute of the metric.
create table public.metric_group_pending (
    org_id uuid not null,
    project_id uuid not null,
    name text not null,
    bucket_start timestamptz not null,
    primary key (project_id, name, bucket_start)
);
create index metric_group_pending_bucket_start_idx on public.metric_group_pending (bucket_start);

------------------------------------------------------------------------------------------------
grant select on public.metric_group_rollups, public.metric_group_keys, public.metric_group_pending to authenticated;
revoke insert, update, delete, truncate on public.metric_group_rollups, public.metric_group_keys,
    public.metric_group_pending from anon, authenticated;
grant select, insert, update, delete on public.metric_group_rollups, public.metric_group_keys,
    public.metric_group_pending to service_role;

alter table public.metric_group_rollups enable row level security;
alter table public.metric_group_keys enable row level security;
alter table public.metric_group_pending enable row level security;

-- As metric_rollups: the organization's members read; an API key reads its own project's rows.
create policy metric_group_rollups_select on public.metric_group_rollups for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
create policy metric_group_keys_select on public.metric_group_keys for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
create policy metric_group_pending_select on public.metric_group_pending for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
