-- AI insights: the per-organization opt-in, token metering, incident summaries, the AI worker's tasks, and the
-- embeddings of resolved incidents (pgvector, the "AI memory" of past incidents).
--
-- As elsewhere, the API roles read through select-only policies and the service role writes after the check in code.

-- pgvector lives in the extensions schema, as on Supabase (where it may already be installed there).
create schema if not exists extensions;
create extension if not exists vector with schema extensions;
grant usage on schema extensions to anon, authenticated, service_role;

-- Off by default: nothing of an organization's telemetry leaves for the model until an owner or admin turns it on.
create table public.org_ai_settings (
    org_id uuid primary key references public.organizations (id) on delete cascade,
    enabled boolean not null default false,
    updated_by uuid,
    updated_at timestamptz not null default now()
);

-- One row per model call (append-only, never a hot row): the month's tokens are a sum over (org_id, at).
create table public.ai_usage (
    id bigint generated always as identity primary key,
    org_id uuid not null references public.organizations (id) on delete cascade,
    project_id uuid,
    at timestamptz not null default now(),
    feature text not null check (feature in ('summary', 'embedding', 'ask_logs', 'ask_metrics')),
    model text not null check (length(model) <= 200),
    input_tokens integer not null default 0 check (input_tokens >= 0),
    output_tokens integer not null default 0 check (output_tokens >= 0),
    -- ok; invalid (the answer failed validation); failed (the call failed after its retries)
    outcome text not null check (outcome in ('ok', 'invalid', 'failed'))
);
create index ai_usage_org_at_idx on public.ai_usage (org_id, at);

-- Summaries of an incident, newest last; only whole, validated answers (status ok) carry an answer. A failed or
-- unavailable attempt is kept too (with its reason), so the API can say why there is no fresh summary.
create table public.incident_summaries (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    incident_id uuid not null references public.incidents (id) on delete cascade,
    status text not null check (status in ('ok', 'failed', 'unavailable')),
    -- observai.ai summary model: summary, probable_cause, impact, next_steps, each with citations
    answer jsonb check (answer is null or jsonb_typeof(answer) = 'object'),
    check ((status = 'ok') = (answer is not null)),
    reason text check (length(reason) <= 1000),
    model text check (length(model) <= 200),
    input_tokens integer not null default 0,
    output_tokens integer not null default 0,
    -- what the answer was built from: the incident as it was (its updated_at), and the context's ids and size
    incident_updated_at timestamptz not null,
    context jsonb not null default '{}' check (jsonb_typeof(context) = 'object'),
    trigger text not null check (trigger in ('requested', 'resolved', 'changed')),
    requested_by uuid,
    created_at timestamptz not null default now(),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index incident_summaries_incident_idx on public.incident_summaries (incident_id, created_at desc);
create index incident_summaries_org_id_idx on public.incident_summaries (org_id);

-- The AI worker's work: one pending task per (incident, kind). Enqueued in the transaction of the change that
-- causes it (an incident resolves, a resolution note is written), claimed with a lease, deleted when done.
create table public.ai_tasks (
    id bigint generated always as identity primary key,
    org_id uuid not null,
    project_id uuid not null,
    incident_id uuid not null references public.incidents (id) on delete cascade,
    kind text not null check (kind in ('summary', 'embedding')),
    reason text not null default 'resolved' check (length(reason) <= 100),
    due_at timestamptz not null default now(),
    attempts integer not null default 0,
    claimed_until timestamptz,
    last_error text check (length(last_error) <= 1000),
    created_at timestamptz not null default now(),
    unique (incident_id, kind),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index ai_tasks_due_idx on public.ai_tasks (due_at);
create index ai_tasks_org_id_idx on public.ai_tasks (org_id);

-- The embedding of a resolved incident (its summary, alert rule names, services, top error messages and the
-- resolution note). The dimension is the model's (setting AI_EMBEDDING_DIMENSIONS): the column is untyped and an
-- HNSW index (cosine distance) per dimension is partial on it; queries cast to that dimension.
create table public.incident_embeddings (
    incident_id uuid primary key references public.incidents (id) on delete cascade,
    org_id uuid not null,
    project_id uuid not null,
    model text not null check (length(model) <= 200),
    dimensions integer not null check (dimensions between 8 and 2000),
    embedding extensions.vector not null,
    check (extensions.vector_dims(embedding) = dimensions),
    source_digest text not null,  -- sha256 of the embedded text: unchanged text is not embedded again
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index incident_embeddings_org_id_idx on public.incident_embeddings (org_id);
create index incident_embeddings_768_hnsw_idx on public.incident_embeddings
    using hnsw ((embedding::extensions.vector(768)) extensions.vector_cosine_ops) where dimensions = 768;
create index incident_embeddings_1536_hnsw_idx on public.incident_embeddings
    using hnsw ((embedding::extensions.vector(1536)) extensions.vector_cosine_ops) where dimensions = 1536;

-- --- grants and policies ------------------------------------------------------------------------------------

do $$
declare
    t text;
begin
    foreach t in array array['incident_summaries', 'incident_embeddings']
    loop
        execute format('grant select on public.%I to authenticated', t);
        execute format('revoke insert, update, delete, truncate on public.%I from anon, authenticated', t);
        execute format('grant select, insert, update, delete on public.%I to service_role', t);
        execute format('alter table public.%I enable row level security', t);
        execute format(
            'create policy %I on public.%I for select to authenticated using ('
            ' org_id in (select private.user_org_ids())'
            ' or project_id = (select private.api_key_claim(''project_id''))::uuid)',
            t || '_select', t);
    end loop;
    -- The organization's members read its opt-in and its usage; only the service writes them.
    foreach t in array array['org_ai_settings', 'ai_usage']
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
-- The worker's queue is the service's alone.
revoke all on public.ai_tasks from anon, authenticated;
grant select, insert, update, delete on public.ai_tasks to service_role;
alter table public.ai_tasks enable row level security;
