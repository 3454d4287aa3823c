-- E-mail addresses of an organization's members, for the members list read under RLS.
-- auth.users is not readable by `authenticated` (on Supabase neither), so a SECURITY DEFINER
-- function exposes exactly one column of it, and only for organizations the caller belongs to.

create function private.member_emails(org uuid) returns table (user_id uuid, email text)
language sql stable security definer
set search_path = ''
as $$
    select u.id, u.email::text
    from auth.users u
    join public.memberships m on m.user_id = u.id
    where m.org_id = org
      and org in (select private.user_org_ids())
$$;

revoke execute on function private.member_emails(uuid) from public, anon;
grant execute on function private.member_emails(uuid) to authenticated, service_role;
