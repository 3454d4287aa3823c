-- Anomaly detection: detectors watching one metric query (one baseline per resulting series), each series' compact
-- baseline state, its scored points (bands for charts), anomaly events, and correlated anomaly groups.
--
-- As elsewhere, the API roles read through select-only policies and the service role writes after the check in code.

create table public.anomaly_detectors (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    name text not null check (length(name) between 1 and 200),
    description text not null default '' check (length(description) <= 1000),
    -- The metric query as the query API spells it: {"name", "filters", "aggregation", "group_by"}.
    query jsonb not null check (jsonb_typeof(query) = 'object'),
    interval_s integer not null check (interval_s between 60 and 86400),
    -- The detection settings (observai.anomalies.settings_models.DetectorSettings): algorithm, window, deviations...
    settings jsonb not null check (jsonb_typeof(settings) = 'object'),
    enabled boolean not null default true,
    -- detect-anomalies: every step before this instant has been scored (the job's cursor), its claim, fairness.
    processed_until timestamptz,
    claimed_until timestamptz,
    last_run_at timestamptz,
    last_error text check (length(last_error) <= 1000),
    created_by uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz,
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index anomaly_detectors_org_id_idx on public.anomaly_detectors (org_id);
create index anomaly_detectors_project_idx on public.anomaly_detectors (project_id, created_at desc) where deleted_at is null;
create index anomaly_detectors_due_idx on public.anomaly_detectors (last_run_at nulls first) where deleted_at is null and enabled;

-- One baseline per series of a detector: the fold's state (running sums, small ring buffers), never the history.
create table public.anomaly_series (
    id bigint generated always as identity primary key,
    org_id uuid not null,
    project_id uuid not null,
    detector_id uuid not null references public.anomaly_detectors (id) on delete cascade,
    series_key text not null check (length(series_key) <= 200),  -- a hash of the labels
    labels jsonb not null default '{}' check (jsonb_typeof(labels) = 'object'),
    state jsonb,  -- observai.anomalies.detection: the state after the last scored point
    algorithm text,  -- what auto picked (or the configured one)
    algorithm_reason text check (length(algorithm_reason) <= 500),
    last_time timestamptz,  -- the last scored point's time
    anomalous boolean not null default false,
    updated_at timestamptz not null default now(),
    unique (detector_id, series_key),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index anomaly_series_org_id_idx on public.anomaly_series (org_id);

-- The scored points: the band and the score per step (chart overlays, GET .../bands). Pruned after 30 days, and
-- like telemetry, erased in bounded batches after a project's deletion (observai.retention.purge): no cascading
-- foreign key, so that deleting a project or resetting a baseline never deletes millions of rows in one statement.
create table public.anomaly_points (
    series_id bigint not null,
    time timestamptz not null,
    org_id uuid not null,
    project_id uuid not null,
    detector_id uuid not null,
    value double precision not null,
    expected double precision,
    lower double precision,
    upper double precision,
    score double precision not null check (score >= 0 and score <= 1),
    is_anomaly boolean not null,
    primary key (series_id, time)
);
create index anomaly_points_detector_idx on public.anomaly_points (detector_id, time);
create index anomaly_points_org_id_idx on public.anomaly_points (org_id);
create index anomaly_points_project_idx on public.anomaly_points (project_id, time);

-- Correlated anomalies: events of one project overlapping in time and sharing attributes.
create table public.anomaly_groups (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    status text not null check (status in ('open', 'closed')),
    started_at timestamptz not null,
    ended_at timestamptz,
    shared_labels jsonb not null default '{}' check (jsonb_typeof(shared_labels) = 'object'),
    reason text not null default '' check (length(reason) <= 1000),
    peak_score double precision not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index anomaly_groups_org_id_idx on public.anomaly_groups (org_id);
create index anomaly_groups_project_idx on public.anomaly_groups (project_id, started_at desc);

create table public.anomaly_events (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    detector_id uuid not null references public.anomaly_detectors (id) on delete cascade,
    series_id bigint not null references public.anomaly_series (id) on delete cascade,
    group_id uuid references public.anomaly_groups (id) on delete set null,
    status text not null check (status in ('open', 'closed')),
    started_at timestamptz not null,
    ended_at timestamptz,
    peak_score double precision not null check (peak_score >= 0 and peak_score <= 1),
    peak_at timestamptz not null,
    expected_at_peak double precision,
    actual_at_peak double precision not null,
    direction text check (direction in ('above', 'below')),
    algorithm text not null,
    labels jsonb not null default '{}' check (jsonb_typeof(labels) = 'object'),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index anomaly_events_org_id_idx on public.anomaly_events (org_id);
create index anomaly_events_project_idx on public.anomaly_events (project_id, started_at desc);
create index anomaly_events_detector_idx on public.anomaly_events (detector_id, started_at desc);
create unique index anomaly_events_open_key on public.anomaly_events (series_id) where status = 'open';

do $$
declare
    t text;
begin
    foreach t in array array['anomaly_detectors', 'anomaly_series', 'anomaly_points', 'anomaly_groups', 'anomaly_events']
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
end
$$;
