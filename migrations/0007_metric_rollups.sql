-- Metric rollups: 1m / 5m / 1h / 1d buckets per series with count, sum, min, max, last, the counter increase
-- and a mergeable DDSketch (relative accuracy 1%), written by the aggregate-metrics job
-- (observai.metrics.rollup), which follows the points by the time they were stored (ingested_at).

------------------------------------------------------------------------------------------------
-- When a point was stored. The writer's COPY does not list the column: the default fills it with the
-- ingest transaction's start time. now() is STABLE, so adding the column is a catalog-only change
-- (existing rows all read the migration's time, and are rolled up by the job's first runs).
-- BRIN: points arrive in ingested order, so block ranges are tight; the index is a few pages per
-- partition and costs ingestion nothing measurable (unlike a btree on a fresh timestamp).
alter table public.metric_points add column ingested_at timestamptz not null default now();
create index metric_points_ingested_at_idx on public.metric_points using brin (ingested_at);

------------------------------------------------------------------------------------------------
-- One row per (series, resolution, bucket), partitioned by day of bucket_start (a 1d bucket starts at
-- 00:00 UTC, so every bucket lies in one daily partition).
--
-- sketch: {"p": {"<index>": count, ...}, "n": {...}, "z": zero_count}: DDSketch stores of the positive
-- values, of |negative values|, and the count of zeros (|x| < 1e-9). Index i holds the values x with
-- gamma^(i-1) < x <= gamma^i, gamma = (1 + 0.01) / (1 - 0.01); each store keeps at most 2048 buckets: the
-- indexes below (max index - 2047) are collapsed into that one (DDSketch's "collapsing lowest" store).
-- Sketches merge by adding counts per (store, index), then collapsing each store below its top index - 2047.
-- In SQL, the merged sketch of the rows of a query (null when none has a sketch):
--
--     with sketches as (select sketch from ...), e as (
--         select s.store, k.key::integer as idx, k.value::bigint as n
--         from sketches r
--         cross join lateral (values ('p', r.sketch -> 'p'), ('n', r.sketch -> 'n')) as s(store, obj)
--         cross join lateral jsonb_each_text(s.obj) as k
--         where r.sketch is not null
--     ), c as (
--         select store, greatest(idx, max(idx) over (partition by store) - 2047) as idx, n from e
--     )
--     select case when count(*) > 0 then jsonb_build_object(
--         'p', coalesce((select jsonb_object_agg(idx::text, n) from
--             (select idx, sum(n)::bigint as n from c where store = 'p' group by idx) p), '{}'::jsonb),
--         'n', coalesce((select jsonb_object_agg(idx::text, n) from
--             (select idx, sum(n)::bigint as n from c where store = 'n' group by idx) n), '{}'::jsonb),
--         'z', coalesce(sum((sketch ->> 'z')::bigint), 0)) end as sketch
--     from sketches where sketch is not null
--
-- (observai.metrics.sketch.SQL_MERGE; the job's coarser re-rolls do the same per bucket.)
create table public.metric_rollups (
    org_id uuid not null,
    project_id uuid not null,
    series_id bigint not null,
    resolution integer not null check (resolution in (60, 300, 3600, 86400)),  -- seconds
    bucket_start timestamptz not null,
    count bigint not null,            -- points; observations for histogram and summary series
    sum double precision,
    min double precision,
    max double precision,
    last double precision,            -- value of the latest point (gauges and sums)
    last_time timestamptz,            -- time of the latest point
    increase double precision,        -- monotonic sums: increase within the bucket, reset-aware; else null
    sketch jsonb,                     -- null when there are no observations (counters, summaries)
    updated_at timestamptz not null default now(),
    primary key (project_id, series_id, resolution, bucket_start)
) partition by range (bucket_start);
create index metric_rollups_project_id_resolution_bucket_start_idx
    on public.metric_rollups (project_id, resolution, bucket_start);

create table public.metric_rollups_default partition of public.metric_rollups default;
alter table public.metric_rollups_default enable row level security;
revoke all on public.metric_rollups_default from public, anon, authenticated;

select private.ensure_daily_partitions(
    'public.metric_rollups'::regclass, (now() at time zone 'UTC')::date - 8, (now() at time zone 'UTC')::date + 3
);

------------------------------------------------------------------------------------------------
-- The job's progress: every point with ingested_at <= watermark is rolled up. Service only.
create table public.metric_rollup_state (
    name text primary key,
    watermark timestamptz not null,
    updated_at timestamptz not null default now()
);

------------------------------------------------------------------------------------------------
grant select on public.metric_rollups to authenticated;
revoke insert, update, delete, truncate on public.metric_rollups from anon, authenticated;
revoke all on public.metric_rollup_state from anon, authenticated;
grant select, insert, update, delete on public.metric_rollups, public.metric_rollup_state to service_role;

alter table public.metric_rollups enable row level security;
alter table public.metric_rollup_state enable row level security;

-- As metric_points: the organization's members read; an API key reads its own project's rows.
create policy metric_rollups_select on public.metric_rollups for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
-- metric_rollup_state: service only (RLS on, no policy).
