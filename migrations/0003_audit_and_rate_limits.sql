-- Audit trail and rate-limit buckets.

-- Audit trail: append-only. org_id has no foreign key on purpose: the trail outlives a deleted org.
create table public.audit_log (
    id bigint generated always as identity primary key,
    org_id uuid,
    actor_type text not null check (actor_type in ('user', 'api_key', 'system')),
    actor_id text,
    action text not null,
    target_type text,
    target_id text,
    details jsonb not null default '{}',
    source_ip inet,
    user_agent text,
    request_id text,
    created_at timestamptz not null default now()
);
-- An organization's trail, newest first (cursor pagination on id).
create index audit_log_org_id_id_idx on public.audit_log (org_id, id desc);

-- Append-only for everyone, superusers included: any UPDATE, DELETE or TRUNCATE statement fails
-- (statement-level, so it fails even when no row matches). Retention would have to drop this trigger
-- explicitly, which is a deliberate, visible act.
create function private.audit_log_append_only() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception 'audit_log is append-only: % refused', tg_op
        using hint = 'audit rows are never changed or removed';
end
$$;
revoke execute on function private.audit_log_append_only() from public, anon;

create trigger audit_log_append_only before update or delete on public.audit_log
    for each statement execute function private.audit_log_append_only();
create trigger audit_log_no_truncate before truncate on public.audit_log
    for each statement execute function private.audit_log_append_only();

-- Belt and braces: the API roles are not even allowed to try.
revoke update, delete, truncate on public.audit_log from anon, authenticated, service_role;
grant select, insert on public.audit_log to authenticated, service_role;

-- Organizations where the current user holds one of `roles`: lets the audit policy be a single
-- per-statement lookup (`org_id in (select ...)`, index on org_id) instead of a call per row.
create function private.user_org_ids_with_role(roles text[]) returns setof uuid
language sql stable security definer
set search_path = ''
as $$
    select m.org_id from public.memberships m where m.user_id = (select auth.uid()) and m.role = any ($1)
$$;
revoke execute on function private.user_org_ids_with_role(text[]) from public, anon;
grant execute on function private.user_org_ids_with_role(text[]) to authenticated, service_role;

-- Owners and admins read their organization's trail (= private.user_org_role(org_id) in ('owner',
-- 'admin')). Rows are written by the service; no write policy for authenticated.
alter table public.audit_log enable row level security;
create policy audit_log_select on public.audit_log for select to authenticated
    using (org_id in (select private.user_org_ids_with_role(array['owner', 'admin'])));

-- Token buckets for rate limiting. UNLOGGED: faster writes, no WAL; losing buckets on a crash
-- only resets some limits, which is harmless.
create unlogged table public.rate_limit_buckets (
    key text primary key,
    tokens double precision not null,
    updated_at timestamptz not null
);
grant select, insert, update, delete on public.rate_limit_buckets to authenticated, service_role;

-- A user may read their own bucket (remaining quota); the service maintains them.
alter table public.rate_limit_buckets enable row level security;
create policy rate_limit_buckets_select on public.rate_limit_buckets for select to authenticated
    using (key = 'user:' || (select auth.uid())::text);
