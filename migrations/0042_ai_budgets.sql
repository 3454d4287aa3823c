-- AI operations: the monthly token budget of each plan, the month's tokens of an organization in one call
-- (whoever asks: a member, an API key of the organization, the service), and API keys reading their
-- organization's opt-in (the ask routes accept read keys).

-- Tokens (input + output, every feature) per calendar month (UTC); null: unlimited.
--   free        250,000  (some 25 incident summaries a month)
--   pro      10,000,000
--   enterprise 100,000,000
alter table public.plans
    add column ai_monthly_tokens bigint check (ai_monthly_tokens is null or ai_monthly_tokens >= 0);
update public.plans set ai_monthly_tokens = case plan
    when 'free' then 250000
    when 'pro' then 10000000
    when 'enterprise' then 100000000
end;

-- The plan, its budget and the tokens used in [since, until) by `org`: for its members, an API key of the
-- organization, and the service (no JWT claims: the service role's own transactions). Nothing for anyone else.
-- SECURITY DEFINER: an API key reads neither organizations nor ai_usage through their policies.
create function private.ai_month(org uuid, since timestamptz, until timestamptz)
returns table (plan text, monthly_tokens bigint, used_tokens bigint)
language sql stable security definer
set search_path = ''
as $$
    select p.plan, p.ai_monthly_tokens,
           (select coalesce(sum(u.input_tokens::bigint + u.output_tokens), 0)::bigint
            from public.ai_usage u
            where u.org_id = org and u.at >= since and u.at < until)
    from public.organizations o join public.plans p on p.plan = o.plan
    where o.id = org
      and (org in (select private.user_org_ids())
           or org::text = (select private.api_key_claim('org_id'))
           or nullif(current_setting('request.jwt.claims', true), '') is null)
$$;
revoke execute on function private.ai_month(uuid, timestamptz, timestamptz) from public, anon;
grant execute on function private.ai_month(uuid, timestamptz, timestamptz) to authenticated, service_role;

-- An API key reads its own organization's opt-in (members already do, through org_ai_settings_select).
create policy org_ai_settings_select_api_key on public.org_ai_settings for select to authenticated
    using (org_id::text = (select private.api_key_claim('org_id')));
