-- Erasing the telemetry of deleted projects (observai.retention.purge).
--
-- The telemetry tables (metric_points, logs, spans, metric_series, the rollups, the log volume,
-- ingest_idempotency: 0005 onward) have no foreign key to public.projects on purpose (no key check on every
-- COPYed row; whole partitions dropped by retention), so deleting a project leaves its rows behind, hidden by
-- RLS, until retention drops their partitions (up to 90 days). Deleting an organization deletes its projects
-- (projects.org_id ... on delete cascade), and a cascaded delete fires the trigger below as a plain one does.
--
-- An AFTER DELETE trigger records each deleted project here; the purge job deletes its rows in bounded batches,
-- counts them in rows_purged, and sets purged_at once a pass finds nothing left (after a grace period covering
-- writes already in flight at the deletion). The row is kept afterwards: the record that the data was erased.
-- Service only (RLS on, no policy).

create table public.deleted_projects (
    project_id uuid primary key,
    org_id uuid not null,  -- no foreign key: the organization may be deleted too
    deleted_at timestamptz not null default now(),
    rows_purged bigint not null default 0,
    last_purged_at timestamptz,  -- the last batch that deleted rows
    purged_at timestamptz  -- null until nothing of the project is left
);
-- The purge's work list: the projects not purged yet, oldest deletion first.
create index deleted_projects_pending_idx on public.deleted_projects (deleted_at) where purged_at is null;

-- SECURITY DEFINER: a project is deleted by its owner as role authenticated, who cannot write this table.
create function private.record_deleted_project() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    -- A project id is a fresh gen_random_uuid(); should one come back and be deleted again, it is purged again.
    insert into public.deleted_projects (project_id, org_id) values (old.id, old.org_id)
    on conflict (project_id) do update
        set org_id = excluded.org_id, deleted_at = excluded.deleted_at, last_purged_at = null, purged_at = null;
    return null;
end
$$;
revoke execute on function private.record_deleted_project() from public, anon, authenticated;

create trigger projects_record_deleted after delete on public.projects
    for each row execute function private.record_deleted_project();

revoke all on public.deleted_projects from public, anon, authenticated;
grant select, insert, update, delete on public.deleted_projects to service_role;
alter table public.deleted_projects enable row level security;
-- deleted_projects: service only (RLS on, no policy).
