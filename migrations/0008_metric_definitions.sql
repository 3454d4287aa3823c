-- Custom metric definitions: what a metric of a project is (type, unit, description), set by people.
-- The metric catalogue shows a definition's fields over what ingestion saw on the metric's series.
-- Definitions describe; they never change how points are stored or aggregated (that follows the series).
--
-- Small, person-written rows: unlike the telemetry tables they do have a foreign key to their project
-- (tenant-consistent: (project_id, org_id)), so deleting a project deletes its definitions.
create table public.metric_definitions (
    org_id uuid not null,
    project_id uuid not null,
    name text not null check (length(name) between 1 and 512),
    type text check (type in ('gauge', 'sum', 'histogram', 'exponential_histogram', 'summary')),
    unit text check (length(unit) <= 64),
    description text check (length(description) <= 2000),
    created_by uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (project_id, name),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
-- The policies' column.
create index metric_definitions_org_id_idx on public.metric_definitions (org_id);

create trigger metric_definitions_touch_updated_at before update on public.metric_definitions
    for each row execute function private.touch_updated_at();

grant select, insert, update, delete on public.metric_definitions to authenticated, service_role;
alter table public.metric_definitions enable row level security;

-- The organization's members read, an API key reads its own project's; owners, admins and members write.
create policy metric_definitions_select on public.metric_definitions for select to authenticated
    using (
        org_id in (select private.user_org_ids())
        or project_id = (select private.api_key_claim('project_id'))::uuid
    );
create policy metric_definitions_insert on public.metric_definitions for insert to authenticated
    with check (org_id in (select private.user_org_ids_with_role(array['owner', 'admin', 'member'])));
create policy metric_definitions_update on public.metric_definitions for update to authenticated
    using (org_id in (select private.user_org_ids_with_role(array['owner', 'admin', 'member'])))
    with check (org_id in (select private.user_org_ids_with_role(array['owner', 'admin', 'member'])));
create policy metric_definitions_delete on public.metric_definitions for delete to authenticated
    using (org_id in (select private.user_org_ids_with_role(array['owner', 'admin', 'member'])));
