-- Retention per organization plan and per log level, without row-by-row DELETE over the big tables.
--
-- The layout: logs, spans and metric_points stay range-partitioned by UTC day, and each day partition is
-- itself LIST-partitioned by a new column `retention_days` (how many days the row is kept), which the
-- writer sets per row from the organization's plan (observai.retention.policy):
--     logs:   severity 1-8 (trace, debug)        → plans.logs_debug_retention_days
--             severity 0 and 9-12 (unset, info)  → plans.logs_info_retention_days
--             severity 13-24 (warn, error, fatal) → plans.retention_days
--     spans, metric_points                       → plans.retention_days
--
--     public.logs                      range (time)
--       logs_p20261122                 list (retention_days)   ← one per UTC day
--         logs_p20261122_r1            values in (1)            ← one per value the plans use
--         logs_p20261122_r3 ...
--         logs_p20261122_default       default                  ← safety net (a value no plan uses today)
--       logs_default                   default                  ← safety net (a day without a partition)
--
-- Retention (observai.retention.cleanup, daily) then drops a sub-partition (day D, retention R) as a
-- whole once D < today - R, and a whole day once nothing in it is kept any more. Every organization on
-- the same plan and level shares the same sub-partitions, so the number of tables does not grow with the
-- number of organizations.
--
-- Why a column and not the plan looked up at drop time: a day partition holds every organization's
-- rows, and Postgres can only drop what a partition bound separates. The column is NOT generated (a
-- partition key cannot be) and is not derived from a join (a partition key cannot be either).
--
-- A plan change (or an organization changing plan) applies to rows written from then on: rows already
-- stored keep the retention they were written with (an upgraded organization's older data still
-- expires on the old schedule; a downgraded one's is kept until its original expiry).
--
-- The migration rebuilds the three tables (rename the old ones, create the new, copy, drop the old):
-- same columns, indexes, policies, grants and RLS, plus retention_days. It verifies grants, policies and
-- index count against the old tables before dropping them.

------------------------------------------------------------------------------------------------
-- Plans: retention per log level. warn+ logs, spans and metrics keep plans.retention_days.
alter table public.plans add column logs_info_retention_days integer, add column logs_debug_retention_days integer;
update public.plans set
    logs_info_retention_days = case plan when 'free' then 3 when 'pro' then 14 else 30 end,
    logs_debug_retention_days = case plan when 'free' then 1 when 'pro' then 7 else 14 end;
update public.plans set retention_days = 90 where retention_days is null;
alter table public.plans
    alter column retention_days set not null,
    alter column logs_info_retention_days set not null,
    alter column logs_debug_retention_days set not null,
    -- Shorter for lower levels, and the values fit the smallint partition key.
    add constraint plans_retention_days_check check (
        retention_days between 1 and 3650
        and logs_info_retention_days between 1 and retention_days
        and logs_debug_retention_days between 1 and logs_info_retention_days
    );

------------------------------------------------------------------------------------------------
-- The retention_days values a table's rows can carry under the current plans: its sub-partitions.
create function private.retention_day_values(parent regclass) returns smallint[]
language sql stable
set search_path = ''
as $$
    select coalesce(array_agg(distinct v::smallint order by v::smallint), '{}')
    from public.plans p
    cross join lateral (values (p.retention_days), (p.logs_info_retention_days), (p.logs_debug_retention_days)) as x (v)
    where x.v = p.retention_days or parent = 'public.logs'::regclass
$$;
revoke execute on function private.retention_day_values(regclass) from public, anon, authenticated;
grant execute on function private.retention_day_values(regclass) to service_role;

------------------------------------------------------------------------------------------------
-- Daily partitions, version 2 (same signature and contract as 0005's): creates the missing partitions
-- <parent>_pYYYYMMDD for first_day..last_day (UTC days) and returns how many partitions it created.
--
-- For a parent with a retention_days column (logs, spans, metric_points), a day partition is itself
-- partitioned by LIST (retention_days), with one sub-partition <day>_r<N> per value the plans use
-- (private.retention_day_values) and a DEFAULT sub-partition <day>_default. A new day counts one; a
-- sub-partition added to an existing day (a plan got a new value) counts one. A sub-partition whose
-- rows would already be expired (day < today - N) is not created: retention dropped it, or would at
-- once (its rows, if any arrive late, wait in the day's default sub-partition, whose rows retention
-- ends with the day). Other parents (metric_rollups) get plain daily partitions, as before.
--
-- Rows move out of a DEFAULT partition (either level) when their partition is created, exactly as in
-- 0005: build a plain table, move the rows (delete ... returning → insert), ATTACH, all in the caller's
-- transaction, the default partition locked EXCLUSIVE first so no row slips in meanwhile. Every new
-- table gets RLS on and no grant to the API roles.
drop function private.ensure_daily_partitions(regclass, date, date);
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
    by_retention boolean;
    today date := (pg_catalog.now() at time zone 'UTC')::date;
    retention_values smallint[];
    v smallint;
    day date;
    part_name text;
    part_rel regclass;
    part_default regclass;
    leaf_name text;
    lower_bound timestamptz;
    upper_bound timestamptz;
    created integer := 0;
    new_tables text[];
    t text;
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

    by_retention := exists (
        select 1 from pg_catalog.pg_attribute a
        where a.attrelid = parent and a.attname = 'retention_days' and not a.attisdropped
    );
    if by_retention then
        retention_values := private.retention_day_values(parent);
    end if;

    for day in select d::date from pg_catalog.generate_series(first_day::timestamp, last_day::timestamp, interval '1 day') d loop
        part_name := parent_name || '_p' || pg_catalog.to_char(day, 'YYYYMMDD');
        part_rel := pg_catalog.to_regclass(pg_catalog.format('%I.%I', parent_schema, part_name));
        new_tables := '{}';

        if part_rel is null then
            lower_bound := day::timestamp at time zone 'UTC';
            upper_bound := (day + 1)::timestamp at time zone 'UTC';

            -- Lock order parent → default (as inserts take them), so no deadlock with writers.
            execute pg_catalog.format('lock table %s in share update exclusive mode', parent);
            if default_rel is not null then
                execute pg_catalog.format('lock table %s in exclusive mode', default_rel);
            end if;

            execute pg_catalog.format(
                'create table %I.%I (like %s including defaults including constraints including generated'
                ' including storage including compression)%s',
                parent_schema, part_name, parent, case when by_retention then ' partition by list (retention_days)' end
            );
            new_tables := new_tables || part_name;
            if by_retention then
                foreach v in array retention_values loop
                    continue when day < today - v;  -- already expired
                    leaf_name := part_name || '_r' || v;
                    execute pg_catalog.format(
                        'create table %I.%I partition of %I.%I for values in (%s)', parent_schema, leaf_name,
                        parent_schema, part_name, v
                    );
                    new_tables := new_tables || leaf_name;
                end loop;
                execute pg_catalog.format(
                    'create table %I.%I partition of %I.%I default', parent_schema, part_name || '_default',
                    parent_schema, part_name
                );
                new_tables := new_tables || (part_name || '_default');
            end if;
            if default_rel is not null then
                execute pg_catalog.format(
                    'with moved as (delete from %1$s where %2$I >= %3$L and %2$I < %4$L returning %5$s)'
                    ' insert into %6$I.%7$I (%5$s) select %5$s from moved',
                    default_rel, key_column, lower_bound, upper_bound, copy_columns, parent_schema, part_name
                );
            end if;
            -- ATTACH builds the parent's indexes on the new tables and checks their rows against the bounds.
            execute pg_catalog.format(
                'alter table %s attach partition %I.%I for values from (%L) to (%L)',
                parent, parent_schema, part_name, lower_bound, upper_bound
            );
            created := created + 1;
        else
            if not exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = part_rel and i.inhparent = parent) then
                raise exception 'ensure_daily_partitions: % exists but is not a partition of %', part_rel, parent;
            end if;
            -- An existing day: add the sub-partitions of values a plan started to use since.
            select nullif(pt.partdefid, 0)::regclass into part_default
            from pg_catalog.pg_partitioned_table pt where pt.partrelid = part_rel and pt.partstrat = 'l';
            if by_retention and found then
                foreach v in array retention_values loop
                    continue when day < today - v;
                    leaf_name := part_name || '_r' || v;
                    continue when pg_catalog.to_regclass(pg_catalog.format('%I.%I', parent_schema, leaf_name)) is not null;
                    -- As for a new day: the day, then its default sub-partition (inserts lock them in this order).
                    execute pg_catalog.format('lock table %s in share update exclusive mode', part_rel);
                    if part_default is not null then
                        execute pg_catalog.format('lock table %s in exclusive mode', part_default);
                    end if;
                    execute pg_catalog.format(
                        'create table %I.%I (like %s including defaults including constraints including generated'
                        ' including storage including compression)',
                        parent_schema, leaf_name, part_rel
                    );
                    if part_default is not null then
                        execute pg_catalog.format(
                            'with moved as (delete from %1$s where retention_days = %2$s returning %3$s)'
                            ' insert into %4$I.%5$I (%3$s) select %3$s from moved',
                            part_default, v, copy_columns, parent_schema, leaf_name
                        );
                    end if;
                    execute pg_catalog.format(
                        'alter table %s attach partition %I.%I for values in (%s)', part_rel, parent_schema, leaf_name, v
                    );
                    new_tables := new_tables || leaf_name;
                    created := created + 1;
                end loop;
            end if;
        end if;

        foreach t in array new_tables loop
            execute pg_catalog.format('alter table %I.%I enable row level security', parent_schema, t);
            execute pg_catalog.format('revoke all on table %I.%I from public, anon, authenticated', parent_schema, t);
        end loop;
    end loop;
    return created;
end
$$;
revoke execute on function private.ensure_daily_partitions(regclass, date, date) from public, anon, authenticated;
grant execute on function private.ensure_daily_partitions(regclass, date, date) to service_role;

------------------------------------------------------------------------------------------------
-- Rebuild helpers (dropped at the end). Retiring a table renames it and its partitions to <name>_old
-- (the new partitions take the old names) and drops its indexes (their partitions' index names would
-- collide with the new ones; the copy does not need them).
create function private.retire_partitioned_table(tbl text) returns void
language plpgsql
set search_path = ''
as $$
declare
    r record;
begin
    execute pg_catalog.format('alter table public.%I rename to %I', tbl, tbl || '_old');
    for r in
        select c.relname from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid
        where i.inhparent = pg_catalog.format('public.%I', tbl || '_old')::regclass
    loop
        execute pg_catalog.format('alter table public.%I rename to %I', r.relname, r.relname || '_old');
    end loop;
    for r in
        select ic.relname from pg_catalog.pg_index x join pg_catalog.pg_class ic on ic.oid = x.indexrelid
        where x.indrelid = pg_catalog.format('public.%I', tbl || '_old')::regclass
    loop
        execute pg_catalog.format('drop index public.%I', r.relname);
    end loop;
end
$$;

-- Partitions for every day the old table had one (at most 400 days back) and today-8 .. today+3, then
-- the new table must match the old one's grants, policies, columns and number of indexes (the old
-- indexes were dropped: the count is passed in).
create function private.finish_rebuilt_table(tbl text, old_index_count integer) returns void
language plpgsql
set search_path = ''
as $$
declare
    today date := (pg_catalog.now() at time zone 'UTC')::date;
    oldest date;
    old_rel regclass := pg_catalog.format('public.%I', tbl || '_old')::regclass;
    new_rel regclass := pg_catalog.format('public.%I', tbl)::regclass;
begin
    select min(pg_catalog.to_date(pg_catalog.right(c.relname, 12), 'YYYYMMDD')) into oldest
    from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid
    where i.inhparent = old_rel and c.relname ~ '_p[0-9]{8}_old$';
    perform private.ensure_daily_partitions(
        new_rel, greatest(least(coalesce(oldest, today - 8), today - 8), today - 400), today + 3
    );
    if (select array(select pg_catalog.unnest(relacl)::text order by 1) from pg_catalog.pg_class where oid = old_rel)
        is distinct from
       (select array(select pg_catalog.unnest(relacl)::text order by 1) from pg_catalog.pg_class where oid = new_rel) then
        raise exception 'rebuilt %: grants differ from the old table', tbl;
    end if;
    if (select array(select p.polname::text || p.polcmd::text || p.polroles::text || pg_catalog.pg_get_expr(p.polqual, p.polrelid)
                     from pg_catalog.pg_policy p where p.polrelid = old_rel order by 1))
        is distinct from
       (select array(select p.polname::text || p.polcmd::text || p.polroles::text || pg_catalog.pg_get_expr(p.polqual, p.polrelid)
                     from pg_catalog.pg_policy p where p.polrelid = new_rel order by 1)) then
        raise exception 'rebuilt %: policies differ from the old table', tbl;
    end if;
    if (select count(*) from pg_catalog.pg_index where indrelid = new_rel) <> old_index_count then
        raise exception 'rebuilt %: % indexes, the old table had %', tbl,
            (select count(*) from pg_catalog.pg_index where indrelid = new_rel), old_index_count;
    end if;
    if not (select relrowsecurity from pg_catalog.pg_class where oid = new_rel) then
        raise exception 'rebuilt %: row level security is off', tbl;
    end if;
    -- Same columns (name, type, nullability, default, generation) plus retention_days: a column another
    -- migration added to the old table cannot be lost silently.
    if (select array(select a.attname::text || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod) || ' '
                            || a.attnotnull::text || ' ' || a.attgenerated::text || ' '
                            || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
                     from pg_catalog.pg_attribute a
                     left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                     where a.attrelid = old_rel and a.attnum > 0 and not a.attisdropped order by 1))
        is distinct from
       (select array(select a.attname::text || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod) || ' '
                            || a.attnotnull::text || ' ' || a.attgenerated::text || ' '
                            || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
                     from pg_catalog.pg_attribute a
                     left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                     where a.attrelid = new_rel and a.attnum > 0 and not a.attisdropped
                       and a.attname <> 'retention_days' order by 1)) then
        raise exception 'rebuilt %: columns differ from the old table', tbl;
    end if;
end
$$;

create temporary table retention_old_index_counts on commit drop as
select c.relname as tbl, (select count(*) from pg_catalog.pg_index x where x.indrelid = c.oid)::integer as n
from pg_catalog.pg_class c
where c.relnamespace = 'public'::regnamespace and c.relname in ('logs', 'spans', 'metric_points');

------------------------------------------------------------------------------------------------
-- Logs.
alter sequence public.logs_id_seq owned by none;  -- else dropping the old table would drop it
select private.retire_partitioned_table('logs');

-- retention_days: days the row is kept, set by the writer. The default only serves rows written by other
-- means (scripts, tests): they are kept as long as the longest plan (90 days when this was written).
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
    search tsvector generated always as (to_tsvector('simple', body)) stored,
    retention_days smallint not null default 90 check (retention_days > 0)
) partition by range (time);
alter sequence public.logs_id_seq owned by public.logs.id;
create index logs_project_id_time_idx on public.logs (project_id, time desc);
create index logs_search_idx on public.logs using gin (search);
create index logs_project_id_trace_id_idx on public.logs (project_id, trace_id) where trace_id is not null;
create index logs_project_id_service_time_idx on public.logs (project_id, service, time desc);
-- The dedup key of logs that carry an event id (partial: logs without one are never deduplicated).
-- A unique index must hold every partition key column, hence retention_days: harmless, a retried event
-- has the same severity and organization, so the same retention_days (only a plan change between two
-- attempts could tell them apart).
create unique index logs_event_id_dedup_idx on public.logs (project_id, event_id, time, retention_days)
    where event_id is not null;
create table public.logs_default partition of public.logs default;
alter table public.logs_default enable row level security;
revoke all on public.logs_default from public, anon, authenticated;

grant select on public.logs to authenticated;
revoke insert, update, delete, truncate on public.logs from anon, authenticated;
grant select, insert, update, delete on public.logs to service_role;
alter table public.logs enable row level security;
create policy logs_select on public.logs for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );

select private.finish_rebuilt_table('logs', (select n from retention_old_index_counts where tbl = 'logs'));

insert into public.logs (id, org_id, project_id, time, observed_time, severity_number, severity_text, service, body,
    attributes, resource, scope, trace_id, span_id, flags, event_id, event_name, retention_days)
select l.id, l.org_id, l.project_id, l.time, l.observed_time, l.severity_number, l.severity_text, l.service, l.body,
    l.attributes, l.resource, l.scope, l.trace_id, l.span_id, l.flags, l.event_id, l.event_name,
    coalesce(
        case
            when l.severity_number between 1 and 8 then p.logs_debug_retention_days
            when l.severity_number between 13 and 24 then p.retention_days
            else p.logs_info_retention_days
        end,
        90  -- an organization that no longer exists: as the column default
    )
from public.logs_old l
left join public.organizations o on o.id = l.org_id
left join public.plans p on p.plan = o.plan;
drop table public.logs_old;

------------------------------------------------------------------------------------------------
-- Spans.
select private.retire_partitioned_table('spans');
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
    event_id text,
    retention_days smallint not null default 90 check (retention_days > 0)  -- as logs.retention_days
) partition by range (start_time);
-- The dedup key (with retention_days, the sub-partition key: see logs_event_id_dedup_idx); its
-- (project_id, trace_id) prefix is also the "all spans of a trace" index.
create unique index spans_dedup_idx on public.spans (project_id, trace_id, span_id, start_time, retention_days);
create index spans_project_id_start_time_idx on public.spans (project_id, start_time desc);
create index spans_project_id_service_start_time_idx on public.spans (project_id, service, start_time desc);
create table public.spans_default partition of public.spans default;
alter table public.spans_default enable row level security;
revoke all on public.spans_default from public, anon, authenticated;

grant select on public.spans to authenticated;
revoke insert, update, delete, truncate on public.spans from anon, authenticated;
grant select, insert, update, delete on public.spans to service_role;
alter table public.spans enable row level security;
create policy spans_select on public.spans for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );

select private.finish_rebuilt_table('spans', (select n from retention_old_index_counts where tbl = 'spans'));

insert into public.spans (org_id, project_id, trace_id, span_id, parent_span_id, name, kind, service, start_time,
    end_time, duration_ns, status_code, status_message, attributes, resource, scope, events, links, trace_state, flags,
    event_id, retention_days)
select s.org_id, s.project_id, s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.service, s.start_time,
    s.end_time, s.duration_ns, s.status_code, s.status_message, s.attributes, s.resource, s.scope, s.events, s.links,
    s.trace_state, s.flags, s.event_id, coalesce(p.retention_days, 90)
from public.spans_old s
left join public.organizations o on o.id = s.org_id
left join public.plans p on p.plan = o.plan;
drop table public.spans_old;

------------------------------------------------------------------------------------------------
-- Metric points.
select private.retire_partitioned_table('metric_points');
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
    event_id text,
    ingested_at timestamptz not null default now(),  -- see 0007
    retention_days smallint not null default 90 check (retention_days > 0)  -- as logs.retention_days
) partition by range (time);
-- The dedup key (a retried point is the same series at the same time), with retention_days (see
-- logs_event_id_dedup_idx).
create unique index metric_points_dedup_idx on public.metric_points (project_id, series_id, time, retention_days);
create index metric_points_ingested_at_idx on public.metric_points using brin (ingested_at);
create table public.metric_points_default partition of public.metric_points default;
alter table public.metric_points_default enable row level security;
revoke all on public.metric_points_default from public, anon, authenticated;

grant select on public.metric_points to authenticated;
revoke insert, update, delete, truncate on public.metric_points from anon, authenticated;
grant select, insert, update, delete on public.metric_points to service_role;
alter table public.metric_points enable row level security;
create policy metric_points_select on public.metric_points for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );

select private.finish_rebuilt_table(
    'metric_points', (select n from retention_old_index_counts where tbl = 'metric_points')
);

insert into public.metric_points (org_id, project_id, series_id, time, start_time, value, count, sum, min, max,
    distribution, exemplars, flags, event_id, ingested_at, retention_days)
select m.org_id, m.project_id, m.series_id, m.time, m.start_time, m.value, m.count, m.sum, m.min, m.max,
    m.distribution, m.exemplars, m.flags, m.event_id, m.ingested_at, coalesce(p.retention_days, 90)
from public.metric_points_old m
left join public.organizations o on o.id = m.org_id
left join public.plans p on p.plan = o.plan;
drop table public.metric_points_old;

drop function private.retire_partitioned_table(text);
drop function private.finish_rebuilt_table(text, integer);
