-- Tenancy: organizations own projects; memberships give Supabase Auth users a role in an organization;
-- API keys belong to one project. Row Level Security on every table: user-facing reads run as role
-- `authenticated` with the caller's claims, so a forgotten filter cannot leak another tenant's rows.

-- Helpers for policies live in `private`, a schema PostgREST does not expose (not callable over RPC).
create schema if not exists private;
revoke all on schema private from public;
grant usage on schema private to authenticated, service_role;

-- updated_at maintained by the database, whoever writes the row.
create function private.touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    new.updated_at := now();
    return new;
end
$$;

create table public.organizations (
    id uuid primary key default gen_random_uuid(),
    name text not null check (length(name) between 1 and 200),
    slug text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    plan text not null default 'free' check (plan in ('free', 'pro', 'enterprise')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table public.projects (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references public.organizations (id) on delete cascade,
    name text not null check (length(name) between 1 and 200),
    slug text not null check (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- Leading org_id: this index is also the org_id index of policies and listings.
    unique (org_id, slug),
    -- Target of tenant-consistent foreign keys (project_id, org_id) from project-owned rows.
    unique (id, org_id)
);

-- user_id has no foreign key to auth.users: an invited user may exist only in Supabase Auth.
create table public.memberships (
    org_id uuid not null references public.organizations (id) on delete cascade,
    user_id uuid not null,
    role text not null check (role in ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (org_id, user_id)
);
-- "Which organizations is this user in": every policy asks it.
create index memberships_user_id_idx on public.memberships (user_id);

create table public.invitations (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references public.organizations (id) on delete cascade,
    email text not null,
    role text not null check (role in ('owner', 'admin', 'member', 'viewer')),
    user_id uuid,        -- the Supabase Auth user the invite created
    invited_by uuid,
    created_at timestamptz not null default now()
);
create index invitations_org_id_idx on public.invitations (org_id);

-- Keys are stored hashed: `prefix` is the public lookup part, `key_hash` the hash of the secret.
create table public.api_keys (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references public.organizations (id) on delete cascade,
    project_id uuid not null references public.projects (id) on delete cascade,
    name text not null check (length(name) between 1 and 100),
    prefix text not null unique,
    key_hash bytea not null,
    scopes text[] not null check (cardinality(scopes) > 0 and scopes <@ array['ingest', 'read', 'admin']::text[]),
    created_by uuid,
    created_at timestamptz not null default now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    rotated_from_id uuid references public.api_keys (id) on delete set null,
    -- The key's org_id claim must be its project's organization.
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index api_keys_project_id_idx on public.api_keys (project_id);
create index api_keys_org_id_idx on public.api_keys (org_id);
create index api_keys_rotated_from_id_idx on public.api_keys (rotated_from_id) where rotated_from_id is not null;

create trigger organizations_touch_updated_at before update on public.organizations
    for each row execute function private.touch_updated_at();
create trigger projects_touch_updated_at before update on public.projects
    for each row execute function private.touch_updated_at();
create trigger memberships_touch_updated_at before update on public.memberships
    for each row execute function private.touch_updated_at();

-- Policy helpers. SECURITY DEFINER so they read memberships without re-entering its own policies;
-- STABLE and wrapped as `(select ...)` in policies so Postgres evaluates them once per statement;
-- empty search_path so every name is schema-qualified and cannot be hijacked.

-- Organizations the current user (auth.uid()) is a member of.
create function private.user_org_ids() returns setof uuid
language sql stable security definer
set search_path = ''
as $$
    select m.org_id from public.memberships m where m.user_id = (select auth.uid())
$$;

-- The current user's role in `org`, null when not a member.
create function private.user_org_role(org uuid) returns text
language sql stable security definer
set search_path = ''
as $$
    select m.role from public.memberships m where m.org_id = org and m.user_id = (select auth.uid())
$$;

-- A claim of the calling API key. API-key callers carry
-- {"role": "authenticated", "api_key": {"id", "org_id", "project_id", "scopes"}} and no sub.
create function private.api_key_claim(name text) returns text
language sql stable security definer
set search_path = ''
as $$
    select auth.jwt() -> 'api_key' ->> $1
$$;

revoke execute on function private.user_org_ids(), private.user_org_role(uuid), private.api_key_claim(text)
    from public, anon;
grant execute on function private.user_org_ids(), private.user_org_role(uuid), private.api_key_claim(text)
    to authenticated, service_role;
revoke execute on function private.touch_updated_at() from public, anon;

-- Explicit grants (the default privileges of 0001 only cover tables created by the same role).
-- A grant lets a role reach the policies below, nothing more.
grant select, insert, update, delete
    on public.organizations, public.projects, public.memberships, public.invitations, public.api_keys
    to authenticated, service_role;

alter table public.organizations enable row level security;
alter table public.projects enable row level security;
alter table public.memberships enable row level security;
alter table public.invitations enable row level security;
alter table public.api_keys enable row level security;

-- organizations: created by the service only (no insert policy).
create policy organizations_select on public.organizations for select to authenticated
    using (id in (select private.user_org_ids()) or id::text = (select private.api_key_claim('org_id')));
create policy organizations_update on public.organizations for update to authenticated
    using (private.user_org_role(id) in ('owner', 'admin'))
    with check (private.user_org_role(id) in ('owner', 'admin'));
create policy organizations_delete on public.organizations for delete to authenticated
    using (private.user_org_role(id) = 'owner');

-- projects: members see their organization's projects, an API key sees its own project.
create policy projects_select on public.projects for select to authenticated
    using (org_id in (select private.user_org_ids()) or id::text = (select private.api_key_claim('project_id')));
create policy projects_insert on public.projects for insert to authenticated
    with check (private.user_org_role(org_id) in ('owner', 'admin'));
create policy projects_update on public.projects for update to authenticated
    using (private.user_org_role(org_id) in ('owner', 'admin'))
    with check (private.user_org_role(org_id) in ('owner', 'admin'));
create policy projects_delete on public.projects for delete to authenticated
    using (private.user_org_role(org_id) in ('owner', 'admin'));

-- memberships: members see who else is in the organization; owners and admins manage it.
create policy memberships_select on public.memberships for select to authenticated
    using (org_id in (select private.user_org_ids()));
create policy memberships_insert on public.memberships for insert to authenticated
    with check (private.user_org_role(org_id) in ('owner', 'admin'));
create policy memberships_update on public.memberships for update to authenticated
    using (private.user_org_role(org_id) in ('owner', 'admin'))
    with check (private.user_org_role(org_id) in ('owner', 'admin'));
create policy memberships_delete on public.memberships for delete to authenticated
    using (private.user_org_role(org_id) in ('owner', 'admin'));

-- invitations: owners and admins only (emails of people not yet in the organization).
create policy invitations_select on public.invitations for select to authenticated
    using (private.user_org_role(org_id) in ('owner', 'admin'));
create policy invitations_insert on public.invitations for insert to authenticated
    with check (private.user_org_role(org_id) in ('owner', 'admin'));

-- api_keys: viewers do not see keys; an API key sees itself; created by the service (it hashes).
create policy api_keys_select on public.api_keys for select to authenticated
    using (
        private.user_org_role(org_id) in ('owner', 'admin', 'member')
        or id::text = (select private.api_key_claim('id'))
    );
create policy api_keys_update on public.api_keys for update to authenticated
    using (private.user_org_role(org_id) in ('owner', 'admin'))
    with check (private.user_org_role(org_id) in ('owner', 'admin'));
create policy api_keys_delete on public.api_keys for delete to authenticated
    using (private.user_org_role(org_id) in ('owner', 'admin'));
