-- One row per organization, UTC day and quota the first time that day's quota refused a request: the
-- usage.quota_reached event leaves through the outbox in the same transaction as this row, so it is sent once a day
-- per quota however many requests are refused. Service only (no grant to the API roles).
create table public.usage_quota_notices (
    org_id uuid not null references public.organizations (id) on delete cascade,
    day date not null,
    quota text not null check (quota ~ '^[a-z_]{1,64}$'),
    noticed_at timestamptz not null default now(),
    primary key (org_id, day, quota)
);
revoke all on public.usage_quota_notices from anon, authenticated;
grant select, insert, update, delete on public.usage_quota_notices to service_role;
alter table public.usage_quota_notices enable row level security;
