-- Pre-aggregated log volume: how many log lines each project stored per UTC minute, service, level and
-- retention_days, so the log histogram's default views (no query, service and level filters) read a few
-- thousand rows instead of counting millions of log lines (observai.logs.volume).
--
-- Two tables, as usage_increments / usage_daily (0005):
--
-- * public.log_volume: append-only increments. The ingest writer inserts one row per (minute, service,
--   level, retention_days) of the lines it COPYed, in the SAME transaction (observai.telemetry.writer): the
--   counts commit or roll back with the lines (exact; a retried event the writer skipped is not counted),
--   and no row is ever updated by a request (no hot row: concurrent requests never wait on each other).
-- * public.log_volume_rolled: one row per (project, minute, service, level, retention_days). Compaction
--   (the partition-upkeep job) moves increments there: delete ... returning → upsert adding, in one
--   statement, so an increment leaves one table exactly when its count enters the other.
--
-- A read sums both tables in ONE statement (one snapshot): a compaction committing meanwhile is counted
-- exactly once. level is the histogram's class, least((severity_number + 3) / 4, 6): 0 unspecified,
-- 1 trace, 2 debug, 3 info, 4 warn, 5 error, 6 fatal. retention_days is the lines' own (migration 0010):
-- the cleanup-retention job purges volume rows when the lines they count expire.
--
-- RLS: members of the organization and the project's API keys read (as public.logs); the service writes.
-- Existing log lines are counted into log_volume_rolled here, under a SHARE lock on public.logs (writers
-- wait for the migration: no line is stored meanwhile without its increment).

create table public.log_volume (
    id bigint generated always as identity primary key,
    org_id uuid not null,
    project_id uuid not null,
    minute timestamptz not null,
    service text,
    level smallint not null check (level between 0 and 6),
    retention_days smallint not null check (retention_days > 0),
    count bigint not null check (count > 0)
);
-- INCLUDE: the histogram reads the increments of a range with an index-only scan.
create index log_volume_project_id_minute_idx on public.log_volume (project_id, minute)
    include (service, level, count);

create table public.log_volume_rolled (
    org_id uuid not null,
    project_id uuid not null,
    minute timestamptz not null,
    service text,
    level smallint not null check (level between 0 and 6),
    retention_days smallint not null check (retention_days > 0),
    count bigint not null check (count > 0),
    -- NULLS NOT DISTINCT: lines without a service share one row per minute, level and retention.
    constraint log_volume_rolled_key unique nulls not distinct (project_id, minute, service, level, retention_days)
        include (count)
);
-- Retention purges by (retention_days, minute < cutoff): an index range per retention value.
create index log_volume_rolled_retention_idx on public.log_volume_rolled (retention_days, minute);

grant select on public.log_volume, public.log_volume_rolled to authenticated;
revoke insert, update, delete, truncate on public.log_volume, public.log_volume_rolled from anon, authenticated;
grant select, insert, update, delete on public.log_volume, public.log_volume_rolled to service_role;
alter table public.log_volume enable row level security;
alter table public.log_volume_rolled enable row level security;
create policy log_volume_select on public.log_volume for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
create policy log_volume_rolled_select on public.log_volume_rolled for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );

-- The lines stored before this migration. date_bin, not date_trunc: independent of the session time zone.
lock table public.logs in share mode;
insert into public.log_volume_rolled (org_id, project_id, minute, service, level, retention_days, count)
select org_id, project_id, date_bin('1 minute', time, timestamptz '2000-01-01 00:00:00+00'), service,
       least((severity_number + 3) / 4, 6), retention_days, count(*)
from public.logs
group by 1, 2, 3, 4, 5, 6;

-- The histogram of a free-text query (observai.logs.search.histogram): as private.log_search_candidates
-- (0012), Row Level Security keeps Postgres from reading the GIN search index for the caller (@@ is not
-- leakproof), so a rare word would be tested on every line of the range. This function counts for the
-- caller (security definer) only lines its own policy shows (the condition of logs_select, as a filter),
-- per bucket, service and level: the caller applies its service and level terms to those rows. Its SQL is
-- fixed; the caller passes a tsquery value, never SQL.
create function private.log_text_histogram(
    project uuid, query tsquery, from_time timestamptz, to_time timestamptz, width interval
)
returns table (bucket timestamptz, service text, level smallint, n bigint)
language plpgsql stable security definer
set search_path = ''
as $$
begin
    -- EXECUTE plans with the actual values: partitions outside the range pruned, the GIN index for rare
    -- words, the time index for common ones.
    return query execute
        'select pg_catalog.date_bin($5, l.time, timestamptz ''1970-01-01 00:00:00+00''), l.service,'
        '       least((l.severity_number + 3) / 4, 6)::smallint, count(*)'
        ' from public.logs l'
        ' where l.project_id = $1 and l.time >= $3 and l.time < $4 and l.search @@ $2'
        ' and (l.org_id in (select private.user_org_ids())'
        '      or l.project_id = (select private.api_key_claim(''project_id''))::uuid)'
        ' group by 1, 2, 3'
        using project, query, from_time, to_time, width;
end
$$;
revoke execute on function private.log_text_histogram(uuid, tsquery, timestamptz, timestamptz, interval)
    from public, anon;
grant execute on function private.log_text_histogram(uuid, tsquery, timestamptz, timestamptz, interval)
    to authenticated, service_role;
