-- Outbound webhooks: endpoints a project subscribes to its events, the messages the outbox fans out to them (one
-- per event and endpoint), and every delivery attempt. Standard Webhooks: the event's id is the `webhook-id`.
--
-- Like alerting, the API roles read through select-only policies; the service role writes after the check in code.
-- Secrets are stored encrypted (the service encrypts; the database never sees them in clear) and never read back
-- by the API roles: the select grant leaves the secret columns out.

create table public.webhook_endpoints (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    url text not null check (length(url) between 8 and 2048),
    description text not null default '' check (length(description) <= 1000),
    -- null: every event type; else only these (alert.firing, incident.triggered...).
    event_types text[] check (event_types is null or cardinality(event_types) between 1 and 50),
    enabled boolean not null default true,
    rate_limit_per_s integer check (rate_limit_per_s between 1 and 10000),
    -- The signing secret (whsec_...), encrypted; during a rotation the previous one signs too until it expires.
    secret_ciphertext bytea not null,
    secret_hint text not null check (length(secret_hint) <= 16),
    previous_secret_ciphertext bytea,
    previous_secret_expires_at timestamptz,
    -- Why and when it was disabled by the delivery engine (410 Gone, failing for 5 days) rather than by a person.
    disabled_reason text check (length(disabled_reason) <= 500),
    disabled_at timestamptz,
    -- The first failure of the current run of failures (null after a success): 5 days of it disables the endpoint.
    failing_since timestamptz,
    created_by uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz,
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index webhook_endpoints_org_id_idx on public.webhook_endpoints (org_id);
create index webhook_endpoints_project_idx on public.webhook_endpoints (project_id, created_at desc) where deleted_at is null;

-- One message per (event, endpoint): what is delivered, retried and replayed.
create table public.webhook_messages (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    endpoint_id uuid not null references public.webhook_endpoints (id) on delete cascade,
    event_id uuid not null,  -- the outbox event's id: the webhook-id header, stable across retries and endpoints
    event_type text not null,
    payload jsonb not null check (jsonb_typeof(payload) = 'object'),
    status text not null default 'pending' check (status in ('pending', 'delivering', 'succeeded', 'failed')),
    attempts integer not null default 0 check (attempts >= 0),
    next_attempt_at timestamptz,  -- null once it succeeded or failed for good
    lease_until timestamptz,  -- a worker's claim of an attempt in flight
    last_attempt_at timestamptz,
    created_at timestamptz not null default now(),
    unique (endpoint_id, event_id),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index webhook_messages_org_id_idx on public.webhook_messages (org_id);
create index webhook_messages_due_idx on public.webhook_messages (next_attempt_at) where next_attempt_at is not null;
create index webhook_messages_endpoint_idx on public.webhook_messages (endpoint_id, created_at desc);

create table public.webhook_attempts (
    id bigint generated always as identity primary key,
    org_id uuid not null,
    project_id uuid not null,
    message_id uuid not null references public.webhook_messages (id) on delete cascade,
    endpoint_id uuid not null,
    attempt integer not null check (attempt >= 1),
    at timestamptz not null,
    status_code integer,  -- null: no answer (timeout, refused, SSRF guard)
    duration_ms integer not null check (duration_ms >= 0),
    response_excerpt text check (length(response_excerpt) <= 1024),
    error text check (length(error) <= 1000),
    succeeded boolean not null,
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index webhook_attempts_org_id_idx on public.webhook_attempts (org_id);
create index webhook_attempts_message_idx on public.webhook_attempts (message_id, id);
create index webhook_attempts_endpoint_idx on public.webhook_attempts (endpoint_id, id desc);

-- Read policies (members of the organization, or an API key of the project), select-only as for alerting.
grant select (id, org_id, project_id, url, description, event_types, enabled, rate_limit_per_s, secret_hint,
    previous_secret_expires_at, disabled_reason, disabled_at, failing_since, created_by, created_at, updated_at,
    deleted_at) on public.webhook_endpoints to authenticated;
grant select on public.webhook_messages, public.webhook_attempts to authenticated;
revoke insert, update, delete, truncate on public.webhook_endpoints, public.webhook_messages, public.webhook_attempts
    from anon, authenticated;
grant select, insert, update, delete on public.webhook_endpoints, public.webhook_messages, public.webhook_attempts
    to service_role;
do $$
declare
    t text;
begin
    foreach t in array array['webhook_endpoints', 'webhook_messages', 'webhook_attempts']
    loop
        execute format('alter table public.%I enable row level security', t);
        execute format(
            'create policy %I on public.%I for select to authenticated using ('
            ' org_id in (select private.user_org_ids())'
            ' or project_id = (select private.api_key_claim(''project_id''))::uuid)',
            t || '_select', t);
    end loop;
end
$$;
