-- Telemetry storage (metric series and points, logs, spans), ingest idempotency, plans and usage.
--
-- Every telemetry row carries org_id and project_id: the key of every index and policy. The big
-- time-partitioned tables (metric_points, logs, spans) have NO foreign key to projects on purpose:
-- an FK check per inserted row costs the hottest write path, and a cascading delete over millions of
-- rows would lock the tables; a deleted project's rows are dropped by retention (a later issue).
-- metric_series follows the same rule (rows of a deleted project are orphans until retention).
--
-- Time-partitioned tables are `partition by range (<time column>)` with DAILY partitions named
-- <table>_pYYYYMMDD (UTC days) plus a DEFAULT partition <table>_default as a safety net, so a row for
-- a day without a partition is stored, never refused. private.ensure_daily_partitions() creates the
-- missing days (scheduled hourly by the partition-upkeep function) and moves rows out of the default
-- partition when their day gets its own partition.
--
-- Partitions are reached through their parent only: Row Level Security of the parent applies there.
-- Each partition also has RLS enabled and no grant for anon/authenticated, so naming a partition
-- directly (PostgREST exposes every public table) shows nothing.

------------------------------------------------------------------------------------------------
-- Metric series: one row per (project, name + sorted attributes). series_id is a stable 63-bit hash
-- the writer computes from the name and the sorted attributes.
create table public.metric_series (
    org_id uuid not null,
    project_id uuid not null,
    series_id bigint not null,
    name text not null,
    type text not null check (type in ('gauge', 'sum', 'histogram', 'exponential_histogram', 'summary')),
    unit text,
    description text,
    attributes jsonb not null,
    monotonic boolean,
    temporality text,
    created_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    primary key (project_id, series_id)
);
create index metric_series_project_id_name_idx on public.metric_series (project_id, name);
create index metric_series_attributes_idx on public.metric_series using gin (attributes jsonb_path_ops);
create index metric_series_org_id_idx on public.metric_series (org_id);

------------------------------------------------------------------------------------------------
-- Metric points, partitioned by day of `time`.
create table public.metric_points (
    org_id uuid not null,
    project_id uuid not null,
    series_id bigint not null,
    time timestamptz not null,
    start_time timestamptz,
    value double precision,
    count bigint,
    sum double precision,
    min double precision,
    max double precision,
    distribution jsonb,
    exemplars jsonb,
    flags integer not null default 0,
    event_id text
) partition by range (time);
-- The dedup key (a retried point is the same series at the same time); includes the partition key.
create unique index metric_points_dedup_idx on public.metric_points (project_id, series_id, time);

------------------------------------------------------------------------------------------------
-- Logs, partitioned by day of `time`. id comes from a sequence (not unique across partitions by
-- constraint, unique in practice): the handle of later "log context" routes.
create sequence public.logs_id_seq as bigint;
create table public.logs (
    id bigint not null default nextval('public.logs_id_seq'),
    org_id uuid not null,
    project_id uuid not null,
    time timestamptz not null,
    observed_time timestamptz,
    severity_number smallint not null default 0,
    severity_text text,
    service text,
    body text not null,
    attributes jsonb not null default '{}',
    resource jsonb not null default '{}',
    scope jsonb,
    trace_id text,
    span_id text,
    flags integer not null default 0,
    event_id text,
    event_name text,
    search tsvector generated always as (to_tsvector('simple', body)) stored
) partition by range (time);
alter sequence public.logs_id_seq owned by public.logs.id;
create index logs_project_id_time_idx on public.logs (project_id, time desc);
create index logs_search_idx on public.logs using gin (search);
create index logs_project_id_trace_id_idx on public.logs (project_id, trace_id) where trace_id is not null;
create index logs_project_id_service_time_idx on public.logs (project_id, service, time desc);
-- The dedup key of logs that carry an event id (partial: logs without one are never deduplicated).
-- ON CONFLICT must repeat the predicate: on conflict (project_id, event_id, time) where event_id is not null.
create unique index logs_event_id_dedup_idx on public.logs (project_id, event_id, time) where event_id is not null;

------------------------------------------------------------------------------------------------
-- Spans, partitioned by day of `start_time`.
create table public.spans (
    org_id uuid not null,
    project_id uuid not null,
    trace_id text not null,
    span_id text not null,
    parent_span_id text,
    name text not null,
    kind text not null,
    service text,
    start_time timestamptz not null,
    end_time timestamptz not null,
    duration_ns bigint not null,
    status_code text not null,
    status_message text,
    attributes jsonb not null default '{}',
    resource jsonb not null default '{}',
    scope jsonb,
    events jsonb not null default '[]',
    links jsonb not null default '[]',
    trace_state text,
    flags integer not null default 0,
    event_id text
) partition by range (start_time);
-- The dedup key; its (project_id, trace_id) prefix is also the "all spans of a trace" index, so there
-- is no separate (project_id, trace_id) index.
create unique index spans_dedup_idx on public.spans (project_id, trace_id, span_id, start_time);
create index spans_project_id_start_time_idx on public.spans (project_id, start_time desc);
create index spans_project_id_service_start_time_idx on public.spans (project_id, service, start_time desc);

-- The safety nets: rows for a day without its own partition land here.
create table public.metric_points_default partition of public.metric_points default;
create table public.logs_default partition of public.logs default;
create table public.spans_default partition of public.spans default;

------------------------------------------------------------------------------------------------
-- Daily partitions. Creates the missing partitions <parent>_pYYYYMMDD for first_day..last_day (UTC
-- days) and returns how many it created. Idempotent: an existing partition is left alone.
--
-- Postgres refuses to create (or attach) a partition while the DEFAULT partition holds rows of its
-- range. So each day is built as a plain table LIKE the parent, the day's rows are moved into it out
-- of the default partition (delete ... returning → insert, one statement), and then it is ATTACHed:
-- all in the caller's transaction, so rows are never lost nor duplicated. ATTACH (unlike CREATE TABLE
-- ... PARTITION OF) takes only SHARE UPDATE EXCLUSIVE on the parent, so concurrent inserts and reads
-- of the parent go on; the default partition is locked EXCLUSIVE first so no row can slip into it
-- between the move and the attach (inserts routed to it wait; inserts into other days do not).
-- Never touches days outside the range (retention of old partitions is a separate job).
create function private.ensure_daily_partitions(parent regclass, first_day date, last_day date)
returns integer
language plpgsql
set search_path = ''
as $$
declare
    parent_schema text;
    parent_name text;
    key_column text;
    default_rel regclass;
    copy_columns text;
    day date;
    part_name text;
    part_rel regclass;
    lower_bound timestamptz;
    upper_bound timestamptz;
    created integer := 0;
begin
    if first_day is null or last_day is null or last_day < first_day then
        return 0;
    end if;
    if last_day - first_day > 400 then
        raise exception 'ensure_daily_partitions: % days requested, at most 401 per call', last_day - first_day + 1;
    end if;

    select n.nspname, c.relname into parent_schema, parent_name
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = parent and c.relkind = 'p';
    if parent_name is null then
        raise exception 'ensure_daily_partitions: % is not a partitioned table', parent;
    end if;

    select a.attname, nullif(pt.partdefid, 0)::regclass into key_column, default_rel
    from pg_catalog.pg_partitioned_table pt
    join pg_catalog.pg_attribute a on a.attrelid = pt.partrelid and a.attnum = pt.partattrs[0]
    where pt.partrelid = parent and pt.partstrat = 'r' and pt.partnatts = 1;
    if key_column is null then
        raise exception 'ensure_daily_partitions: % is not range-partitioned on one column', parent;
    end if;

    -- Columns a row move copies: all but generated ones (recomputed on insert) and dropped ones.
    select string_agg(pg_catalog.quote_ident(a.attname), ', ' order by a.attnum) into copy_columns
    from pg_catalog.pg_attribute a
    where a.attrelid = parent and a.attnum > 0 and not a.attisdropped and a.attgenerated = '';

    for day in select d::date from pg_catalog.generate_series(first_day::timestamp, last_day::timestamp, interval '1 day') d loop
        part_name := parent_name || '_p' || pg_catalog.to_char(day, 'YYYYMMDD');
        part_rel := pg_catalog.to_regclass(pg_catalog.format('%I.%I', parent_schema, part_name));
        if part_rel is not null then
            if not exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = part_rel and i.inhparent = parent) then
                raise exception 'ensure_daily_partitions: % exists but is not a partition of %', part_rel, parent;
            end if;
            continue;
        end if;

        lower_bound := day::timestamp at time zone 'UTC';
        upper_bound := (day + 1)::timestamp at time zone 'UTC';

        -- Lock order parent → default (as inserts take them), so no deadlock with writers.
        execute pg_catalog.format('lock table %s in share update exclusive mode', parent);
        if default_rel is not null then
            execute pg_catalog.format('lock table %s in exclusive mode', default_rel);
        end if;

        execute pg_catalog.format(
            'create table %I.%I (like %s including defaults including constraints including generated'
            ' including storage including compression)',
            parent_schema, part_name, parent
        );
        if default_rel is not null then
            execute pg_catalog.format(
                'with moved as (delete from %1$s where %2$I >= %3$L and %2$I < %4$L returning %5$s)'
                ' insert into %6$I.%7$I (%5$s) select %5$s from moved',
                default_rel, key_column, lower_bound, upper_bound, copy_columns, parent_schema, part_name
            );
        end if;
        -- ATTACH builds the parent's indexes on the new table and checks its rows against the bounds.
        execute pg_catalog.format(
            'alter table %s attach partition %I.%I for values from (%L) to (%L)',
            parent, parent_schema, part_name, lower_bound, upper_bound
        );
        execute pg_catalog.format('alter table %I.%I enable row level security', parent_schema, part_name);
        execute pg_catalog.format('revoke all on table %I.%I from public, anon, authenticated', parent_schema, part_name);
        created := created + 1;
    end loop;
    return created;
end
$$;
revoke execute on function private.ensure_daily_partitions(regclass, date, date) from public, anon, authenticated;
grant execute on function private.ensure_daily_partitions(regclass, date, date) to service_role;

-- The default partitions are closed the same way.
alter table public.metric_points_default enable row level security;
alter table public.logs_default enable row level security;
alter table public.spans_default enable row level security;
revoke all on public.metric_points_default, public.logs_default, public.spans_default from public, anon, authenticated;

-- A fresh database works at once: today-8 .. today+3 (UTC), as the hourly upkeep keeps it.
select private.ensure_daily_partitions(t::regclass, (now() at time zone 'UTC')::date - 8, (now() at time zone 'UTC')::date + 3)
from unnest(array['public.metric_points', 'public.logs', 'public.spans']) t;

------------------------------------------------------------------------------------------------
-- Idempotency-Key replays of ingest requests: the first response, kept 24 hours. Service only.
create table public.ingest_idempotency (
    project_id uuid not null,
    key text not null,
    org_id uuid not null,
    request_hash text not null,
    status integer not null,
    response jsonb not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null default now() + interval '24 hours',
    primary key (project_id, key)
);
create index ingest_idempotency_expires_at_idx on public.ingest_idempotency (expires_at);

------------------------------------------------------------------------------------------------
-- Plans and their limits; null means unlimited.
create table public.plans (
    plan text primary key check (plan in ('free', 'pro', 'enterprise')),
    events_per_day bigint,
    bytes_per_day bigint,
    max_series integer,
    max_cardinality_per_metric integer,  -- distinct series per metric name
    retention_days integer
);
insert into public.plans (plan, events_per_day, bytes_per_day, max_series, max_cardinality_per_metric, retention_days)
values
    ('free', 1000000, 1073741824, 10000, 1000, 7),
    ('pro', 100000000, 107374182400, 1000000, 50000, 30),
    ('enterprise', null, null, 10000000, 500000, 90);

alter table public.organizations
    add constraint organizations_plan_fkey foreign key (plan) references public.plans (plan);

------------------------------------------------------------------------------------------------
-- Usage. The writer inserts one small row per request and signal into usage_increments, in the same
-- transaction as the data (exact, and no hot row: concurrent requests never update the same row).
-- The roll-up job moves increments into usage_daily. Today's usage = usage_daily + increments.
create table public.usage_increments (
    id bigint generated always as identity primary key,
    org_id uuid not null references public.organizations (id) on delete cascade,
    project_id uuid not null,
    day date not null,
    signal text not null check (signal in ('metrics', 'logs', 'traces')),
    events bigint not null,
    bytes bigint not null,
    created_at timestamptz not null default now()
);
-- INCLUDE: the quota check sums today's increments of an org with an index-only scan.
create index usage_increments_org_id_day_idx on public.usage_increments (org_id, day) include (signal, events, bytes);

create table public.usage_daily (
    org_id uuid not null references public.organizations (id) on delete cascade,
    day date not null,
    signal text not null check (signal in ('metrics', 'logs', 'traces')),
    events bigint not null default 0,
    bytes bigint not null default 0,
    primary key (org_id, day, signal)
);

-- Increments of `org` between two days not yet rolled up, for the org's members only (usage_increments
-- itself is service-only). STABLE: it reads the calling statement's snapshot, so a report that unions
-- it with usage_daily in one statement never counts a roll-up twice or misses it.
create function private.pending_usage(org uuid, from_day date, to_day date)
returns table (day date, signal text, events bigint, bytes bigint)
language sql stable security definer
set search_path = ''
as $$
    select i.day, i.signal, sum(i.events)::bigint, sum(i.bytes)::bigint
    from public.usage_increments i
    where i.org_id = org and i.day between from_day and to_day
      and org in (select private.user_org_ids())
    group by i.day, i.signal
$$;
revoke execute on function private.pending_usage(uuid, date, date) from public, anon;
grant execute on function private.pending_usage(uuid, date, date) to authenticated, service_role;

------------------------------------------------------------------------------------------------
-- Grants: the API roles read (through the policies below); only the service writes.
grant select on public.metric_series, public.metric_points, public.logs, public.spans, public.ingest_idempotency,
    public.plans, public.usage_increments, public.usage_daily
    to authenticated;
revoke insert, update, delete, truncate on public.metric_series, public.metric_points, public.logs, public.spans,
    public.ingest_idempotency, public.plans, public.usage_increments, public.usage_daily
    from anon, authenticated;
grant select, insert, update, delete on public.metric_series, public.metric_points, public.logs, public.spans,
    public.ingest_idempotency, public.plans, public.usage_increments, public.usage_daily
    to service_role;
grant usage, select on sequence public.logs_id_seq to service_role;

alter table public.metric_series enable row level security;
alter table public.metric_points enable row level security;
alter table public.logs enable row level security;
alter table public.spans enable row level security;
alter table public.ingest_idempotency enable row level security;
alter table public.plans enable row level security;
alter table public.usage_increments enable row level security;
alter table public.usage_daily enable row level security;

-- Telemetry: the organization's members read; an API key reads its own project's rows. Queries always
-- filter on project_id, the leading column of every index; the policy is a filter on those rows (an
-- org_id index on the partitioned tables would cost every insert and serve no query). The claim is cast
-- to uuid (not the column to text) so the project_id indexes stay usable.
create policy metric_series_select on public.metric_series for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
create policy metric_points_select on public.metric_points for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
create policy logs_select on public.logs for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
create policy spans_select on public.spans for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );

-- Plans are public knowledge to every signed-in caller.
create policy plans_select on public.plans for select to authenticated using (true);

-- ingest_idempotency, usage_increments: service only (RLS on, no policy for authenticated).

-- Rolled-up usage: the organization's members read.
create policy usage_daily_select on public.usage_daily for select to authenticated
    using (org_id in (select private.user_org_ids()));
