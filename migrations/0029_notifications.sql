-- Paging: contact points (e-mail, Slack, PagerDuty, webhook), each person's notification settings, escalation
-- policies and their run per incident, on-call schedules with overrides, and one delivery record per message sent.
--
-- As for alerting and webhooks, the API roles read through select-only policies and the service role writes after
-- the check in code. Channel secrets (Slack webhook URLs, PagerDuty routing keys) are sealed with envelope
-- encryption by the service; the select grant leaves the sealed column out.

-- --- contact points ------------------------------------------------------------------------------------------

create table public.contact_points (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    -- Routes of the notification policy name contact points (receivers.contact_points): unique per project.
    name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$'),
    kind text not null check (kind in ('email', 'slack', 'pagerduty', 'webhook')),
    -- What is not secret: e-mail addresses, PagerDuty severity mapping, the Slack channel's label...
    settings jsonb not null default '{}' check (jsonb_typeof(settings) = 'object'),
    -- The secret part (Slack URL, routing key, webhook signing secret), sealed; its last characters as a hint.
    secret_sealed bytea,
    secret_hint text check (length(secret_hint) <= 16),
    -- kind webhook: the hidden endpoint of the webhook delivery engine that carries its messages.
    webhook_endpoint_id uuid references public.webhook_endpoints (id) on delete set null,
    enabled boolean not null default true,
    -- Why and when a delivery disabled it (Slack 404/410...) rather than a person.
    disabled_reason text check (length(disabled_reason) <= 500),
    disabled_at timestamptz,
    created_by uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz,
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index contact_points_org_id_idx on public.contact_points (org_id);
create unique index contact_points_name_key on public.contact_points (project_id, name) where deleted_at is null;
create index contact_points_project_idx on public.contact_points (project_id, created_at desc) where deleted_at is null;

-- A webhook endpoint that belongs to a contact point is not a subscription: the outbox fan-out skips it and the
-- webhooks API does not list it.
alter table public.webhook_endpoints add column contact_point_owned boolean not null default false;

-- How a person is reached, per organization: e-mail (their Supabase Auth address) unless turned off, and a Slack
-- contact point of the organization's projects mentioning their Slack member id. The Slack member id also maps a
-- Slack button press back to the member.
create table public.member_notification_settings (
    org_id uuid not null references public.organizations (id) on delete cascade,
    user_id uuid not null,
    email_enabled boolean not null default true,
    slack_user_id text check (slack_user_id ~ '^[UW][A-Z0-9]{2,20}$'),
    slack_contact_point_id uuid references public.contact_points (id) on delete set null,
    updated_at timestamptz not null default now(),
    primary key (org_id, user_id)
);
create unique index member_notification_settings_slack_key on public.member_notification_settings (org_id, slack_user_id)
    where slack_user_id is not null;

-- --- escalation ----------------------------------------------------------------------------------------------

create table public.escalation_policies (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$'),
    description text not null default '' check (length(description) <= 1000),
    -- [{"wait_minutes": 5, "targets": [{"type": "user"|"schedule"|"contact_point", "id": "..."}]}, ...]
    steps jsonb not null check (jsonb_typeof(steps) = 'array'),
    -- How many times the whole policy runs again after its last step (0: once).
    repeat integer not null default 0 check (repeat between 0 and 5),
    -- Acknowledged but not resolved after this long: it triggers again (null: never).
    ack_timeout_minutes integer check (ack_timeout_minutes between 1 and 10080),
    created_by uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz,
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index escalation_policies_org_id_idx on public.escalation_policies (org_id);
create unique index escalation_policies_name_key on public.escalation_policies (project_id, name)
    where deleted_at is null;

-- One escalation run per incident: where it stands and when it moves next. The policy is copied at the start, so
-- editing a policy never changes a page in progress.
create table public.incident_escalations (
    incident_id uuid primary key references public.incidents (id) on delete cascade,
    org_id uuid not null,
    project_id uuid not null,
    policy_id uuid references public.escalation_policies (id) on delete set null,
    policy jsonb not null check (jsonb_typeof(policy) = 'object'),
    -- active: paging; halted: acknowledged (waits for the ack timeout or an unacknowledge); done: resolved, or the
    -- last step of the last round ran.
    status text not null check (status in ('active', 'halted', 'done')),
    step integer not null default 0 check (step >= 0),  -- the next step to run
    round integer not null default 0 check (round >= 0),  -- 0, then 1.. for each repeat
    -- Bumped at every move: the idempotency keys of its pages carry it, and a timer names the seq it was set for.
    seq integer not null default 0 check (seq >= 0),
    next_at timestamptz,  -- the next step (active) or the ack timeout (halted); null when done
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index incident_escalations_org_id_idx on public.incident_escalations (org_id);
create index incident_escalations_due_idx on public.incident_escalations (next_at) where next_at is not null;

-- --- on-call schedules (per organization) ---------------------------------------------------------------------

create table public.oncall_schedules (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references public.organizations (id) on delete cascade,
    name text not null check (length(name) between 1 and 200),
    description text not null default '' check (length(description) <= 1000),
    time_zone text not null,  -- IANA, the default of its layers
    -- Ordered, lowest first (a higher layer wins where they overlap): [{"name", "users": [...], "rotation":
    -- {"unit": "hours"|"days"|"weeks", "length": n}, "start": RFC 3339, "handoff_time": "09:00", "time_zone",
    -- "restrictions": [...]}, ...]
    layers jsonb not null check (jsonb_typeof(layers) = 'array'),
    created_by uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz
);
create index oncall_schedules_org_idx on public.oncall_schedules (org_id, created_at desc) where deleted_at is null;

create table public.oncall_overrides (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references public.organizations (id) on delete cascade,
    schedule_id uuid not null references public.oncall_schedules (id) on delete cascade,
    user_id uuid not null,
    start_at timestamptz not null,
    end_at timestamptz not null,
    created_by uuid,
    created_at timestamptz not null default now(),
    check (end_at > start_at)
);
create index oncall_overrides_org_id_idx on public.oncall_overrides (org_id);
create index oncall_overrides_schedule_idx on public.oncall_overrides (schedule_id, start_at);

-- --- deliveries ------------------------------------------------------------------------------------------------

-- One row per message to one recipient: a contact point, or a person through one of their channels. The key makes
-- a retried run or a redelivered queue message a no-op: incident, escalation seq and step, recipient and event.
create table public.notification_deliveries (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    incident_id uuid references public.incidents (id) on delete cascade,
    contact_point_id uuid references public.contact_points (id) on delete set null,
    user_id uuid,  -- a person paged by an escalation step (through e-mail or their Slack contact point)
    channel text not null check (channel in ('email', 'slack', 'pagerduty', 'webhook')),
    -- trigger, acknowledge, resolve (PagerDuty's event actions and the matching messages), notify (a route's
    -- notification: first, changed, repeat, resolved), test.
    event text not null check (event in ('trigger', 'acknowledge', 'resolve', 'notify', 'test')),
    source text not null check (source in ('route', 'escalation', 'test')),
    escalation_step integer,
    notification_log_id bigint,
    idempotency_key text not null unique check (length(idempotency_key) <= 300),
    -- What to say (rendered at send time from this and the incident): title, reason, alerts, recipients...
    payload jsonb not null default '{}' check (jsonb_typeof(payload) = 'object'),
    status text not null default 'pending' check (status in ('pending', 'sending', 'sent', 'failed', 'skipped')),
    attempts integer not null default 0 check (attempts >= 0),
    next_attempt_at timestamptz,
    lease_until timestamptz,
    response_code integer,
    error text check (length(error) <= 1000),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    sent_at timestamptz,
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index notification_deliveries_org_id_idx on public.notification_deliveries (org_id);
create index notification_deliveries_incident_idx on public.notification_deliveries (incident_id, created_at);
create index notification_deliveries_due_idx on public.notification_deliveries (next_attempt_at)
    where next_attempt_at is not null;
create index notification_deliveries_contact_point_idx on public.notification_deliveries (contact_point_id, created_at desc);

-- Per-channel send slots (Slack 1 message/s per webhook URL, PagerDuty about 120 events/min per routing key): the
-- key is a hash of the secret, never the secret.
create table public.notification_send_slots (
    key text primary key check (length(key) <= 100),
    window_start timestamptz not null,
    sent integer not null default 0 check (sent >= 0)
);

-- --- grants and policies --------------------------------------------------------------------------------------

grant select (id, org_id, project_id, name, kind, settings, secret_hint, webhook_endpoint_id, enabled,
    disabled_reason, disabled_at, created_by, created_at, updated_at, deleted_at) on public.contact_points to authenticated;
revoke insert, update, delete, truncate on public.contact_points from anon, authenticated;
grant select, insert, update, delete on public.contact_points to service_role;

do $$
declare
    t text;
begin
    foreach t in array array['escalation_policies', 'incident_escalations', 'notification_deliveries']
    loop
        execute format('grant select on public.%I to authenticated', t);
        execute format('revoke insert, update, delete, truncate on public.%I from anon, authenticated', t);
        execute format('grant select, insert, update, delete on public.%I to service_role', t);
    end loop;
    foreach t in array array['contact_points', 'escalation_policies', 'incident_escalations', 'notification_deliveries']
    loop
        execute format('alter table public.%I enable row level security', t);
        execute format(
            'create policy %I on public.%I for select to authenticated using ('
            ' org_id in (select private.user_org_ids())'
            ' or project_id = (select private.api_key_claim(''project_id''))::uuid)',
            t || '_select', t);
    end loop;
    -- Organization-level tables: members read.
    foreach t in array array['oncall_schedules', 'oncall_overrides', 'member_notification_settings']
    loop
        execute format('grant select on public.%I to authenticated', t);
        execute format('revoke insert, update, delete, truncate on public.%I from anon, authenticated', t);
        execute format('grant select, insert, update, delete on public.%I to service_role', t);
        execute format('alter table public.%I enable row level security', t);
        execute format(
            'create policy %I on public.%I for select to authenticated using (org_id in (select private.user_org_ids()))',
            t || '_select', t);
    end loop;
end
$$;
revoke all on public.notification_send_slots from anon, authenticated;
grant select, insert, update, delete on public.notification_send_slots to service_role;
alter table public.notification_send_slots enable row level security;
