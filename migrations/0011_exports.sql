-- Exports: asynchronous copies of a project's logs or spans (a time range, a query) to object storage as
-- gzip NDJSON. The API inserts a row (queued) and enqueues its id; the export worker claims it (running,
-- with a lease), streams the rows to S3 and records the outcome (succeeded with row_count, bytes and the
-- object key, or failed with the reason).
--
-- Rows are small and written by the service only, after its own permission check: the API roles read
-- (through the policies below) and never write. Like metric_definitions they have a tenant-consistent
-- foreign key to their project, so deleting a project deletes its exports' rows (the objects expire by the
-- bucket's lifecycle rule).
create table public.exports (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    signal text not null check (signal in ('logs', 'spans')),
    from_time timestamptz not null,
    to_time timestamptz not null,
    query text not null default '' check (length(query) <= 2000),
    -- Span filters (service, name, status): equality on plain columns; empty for logs.
    filters jsonb not null default '{}' check (jsonb_typeof(filters) = 'object'),
    status text not null default 'queued' check (status in ('queued', 'running', 'succeeded', 'failed')),
    row_count bigint check (row_count >= 0),
    bytes bigint check (bytes >= 0),
    s3_key text,
    error text check (length(error) <= 2000),
    -- The worker's claim: attempts counts claims, lease_until bounds one (past it, the claim is stale and
    -- another delivery of the message may take the export over; the attempt number fences the old one).
    attempts integer not null default 0 check (attempts >= 0),
    lease_until timestamptz,
    created_by uuid,  -- the user, when a person asked
    created_by_key_id uuid,  -- the API key, when a program asked
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    expires_at timestamptz,  -- when the object (and so the download link) goes away
    check (to_time > from_time),
    check (status <> 'succeeded' or (row_count is not null and bytes is not null and s3_key is not null)),
    check (status <> 'failed' or error is not null),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
-- The list route: a project's exports, newest first (keyset on created_at, id).
create index exports_project_id_created_at_idx on public.exports (project_id, created_at desc, id desc);
-- The concurrency limit counts a project's unfinished exports.
create index exports_unfinished_idx on public.exports (project_id) where status in ('queued', 'running');
-- The policies' column.
create index exports_org_id_idx on public.exports (org_id);

grant select on public.exports to authenticated;
revoke insert, update, delete, truncate on public.exports from anon, authenticated;
grant select, insert, update, delete on public.exports to service_role;
alter table public.exports enable row level security;

-- The organization's members read, an API key reads its own project's; only the service writes.
create policy exports_select on public.exports for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
