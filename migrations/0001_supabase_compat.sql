-- Supabase compatibility: create what every Supabase project already provides, and only where it is
-- absent, so the same migrations run unchanged on Supabase and on a plain Postgres 16 (tests, local).
-- On Supabase most of this is owned by supabase_admin / supabase_auth_admin: never `create or replace`
-- those objects, only create them when missing, and tolerate grants we are not allowed to make.

-- API roles, as PostgREST switches to them (`set local role ...`). service_role bypasses RLS.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
end
$$;

-- The connecting user must be a member to `set role` to them per transaction (as PostgREST's
-- authenticator is). Already true on Supabase; harmless if already granted or not permitted.
do $$
begin
    grant anon, authenticated, service_role to current_user;
exception
    when insufficient_privilege or invalid_grant_operation then
        raise notice 'could not grant API roles to %: %', current_user, sqlerrm;
end
$$;

do $$
begin
    if not exists (select 1 from pg_namespace where nspname = 'auth') then
        create schema auth;
    end if;
end
$$;

-- auth.uid(), auth.role(), auth.jwt(): same definitions as Supabase's, reading the claims the API
-- (or PostgREST) sets for the transaction; the legacy request.jwt.claim.* settings are honoured too.
do $$
begin
    if not exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        execute $fn$
            create function auth.uid() returns uuid
            language sql stable
            as $body$
                select coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
                )::uuid
            $body$
        $fn$;
    end if;
    if not exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'role'
    ) then
        execute $fn$
            create function auth.role() returns text
            language sql stable
            as $body$
                select coalesce(
                    nullif(current_setting('request.jwt.claim.role', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
                )::text
            $body$
        $fn$;
    end if;
    if not exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'jwt'
    ) then
        execute $fn$
            create function auth.jwt() returns jsonb
            language sql stable
            as $body$
                select coalesce(
                    nullif(current_setting('request.jwt.claim', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')
                )::jsonb
            $body$
        $fn$;
    end if;
end
$$;

-- A minimal stand-in for Supabase Auth's users table (local and tests only; Supabase has the real one).
do $$
begin
    if not exists (
        select 1 from information_schema.tables where table_schema = 'auth' and table_name = 'users'
    ) then
        create table auth.users (
            id uuid primary key default gen_random_uuid(),
            email text unique,
            raw_user_meta_data jsonb default '{}',
            created_at timestamptz default now()
        );
    end if;
end
$$;

-- Supabase Realtime streams the tables added to this publication (live incident updates).
do $$
begin
    if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
        create publication supabase_realtime;
    end if;
end
$$;

-- The grants Supabase has. Tables stay closed by Row Level Security: a grant only lets a role reach
-- the policies. The auth schema may not be ours to grant on (Supabase): tolerate that.
grant usage on schema public to anon, authenticated, service_role;

do $$
begin
    grant usage on schema auth to anon, authenticated, service_role;
    grant execute on function auth.uid(), auth.role(), auth.jwt() to anon, authenticated, service_role;
exception
    when insufficient_privilege then
        raise notice 'could not grant on schema auth: %', sqlerrm;
end
$$;

alter default privileges in schema public
    grant select, insert, update, delete on tables to anon, authenticated, service_role;
alter default privileges in schema public
    grant usage, select on sequences to anon, authenticated, service_role;
alter default privileges in schema public
    grant execute on functions to anon, authenticated, service_role;
