-- Alerting: rules (versioned), their evaluation state (alert instances and an append-only history), the
-- notification policy of a project (routes, grouping, inhibition), silences, notification groups with their
-- timers and notification log, incidents with their timeline, and the outbox of events.
--
-- Every row carries org_id and project_id, with a tenant-consistent foreign key to its project (deleting a
-- project deletes its alerting rows). The API roles read through the policies below; every write is done by
-- the service role after the permission check in code (as exports do), so the policies are select-only.

-- --- rules ------------------------------------------------------------------------------------------------

create table public.alert_rules (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    name text not null check (length(name) between 1 and 200),
    -- metric, log, absence; the anomaly detection issue adds its kind (pluggable: the code holds the registry).
    kind text not null check (kind ~ '^[a-z_]{1,32}$'),
    -- The kind's own settings (query, window, comparison, threshold...), validated by the kind's model.
    spec jsonb not null check (jsonb_typeof(spec) = 'object'),
    for_s integer not null default 0 check (for_s between 0 and 86400),
    keep_firing_for_s integer not null default 0 check (keep_firing_for_s between 0 and 86400),
    interval_s integer not null default 60 check (interval_s between 60 and 86400),
    severity text not null default 'warning' check (severity in ('critical', 'error', 'warning', 'info')),
    labels jsonb not null default '{}' check (jsonb_typeof(labels) = 'object'),
    annotations jsonb not null default '{}' check (jsonb_typeof(annotations) = 'object'),
    enabled boolean not null default true,
    version integer not null default 1 check (version >= 1),
    created_by uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- Evaluation bookkeeping (the evaluate-alerts job): when the rule is due next, the claim of the run
    -- evaluating it (a run takes due rules with FOR UPDATE SKIP LOCKED and a lease; eval_seq fences a run
    -- whose lease expired), and the outcome of the last evaluation.
    next_eval_at timestamptz not null default now(),
    eval_lease_until timestamptz,
    eval_seq bigint not null default 0,
    last_eval_at timestamptz,
    last_eval_lag_ms integer,
    last_eval_duration_ms integer,
    last_error text check (length(last_error) <= 2000),
    last_error_at timestamptz,
    unique (project_id, name),
    unique (id, project_id),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index alert_rules_org_id_idx on public.alert_rules (org_id);
-- The job's claim: enabled rules in due order.
create index alert_rules_due_idx on public.alert_rules (next_eval_at) where enabled;
create trigger alert_rules_touch_updated_at before update of name, kind, spec, for_s, keep_firing_for_s,
    interval_s, severity, labels, annotations, enabled on public.alert_rules
    for each row execute function private.touch_updated_at();

-- Every version of every rule, as it was saved: an incident shows the rule its alerts fired under.
-- Kept when the rule is deleted (no foreign key to the rule; deleted with the project).
create table public.alert_rule_versions (
    rule_id uuid not null,
    version integer not null,
    org_id uuid not null,
    project_id uuid not null,
    definition jsonb not null check (jsonb_typeof(definition) = 'object'),
    created_by uuid,
    created_at timestamptz not null default now(),
    primary key (rule_id, version),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index alert_rule_versions_org_id_idx on public.alert_rule_versions (org_id);
create index alert_rule_versions_project_id_idx on public.alert_rule_versions (project_id);

-- --- evaluation state -------------------------------------------------------------------------------------

-- One row per rule and result series (its labels' fingerprint): the current state of that alert.
create table public.alert_instances (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    rule_id uuid not null,
    rule_version integer not null,
    fingerprint text not null check (fingerprint ~ '^[0-9a-f]{16,64}$'),
    -- The alert's labels: the rule's labels, the series' labels, alertname and severity.
    labels jsonb not null check (jsonb_typeof(labels) = 'object'),
    annotations jsonb not null default '{}' check (jsonb_typeof(annotations) = 'object'),
    state text not null check (state in ('inactive', 'pending', 'firing', 'resolved')),
    value double precision,
    active_at timestamptz,  -- the condition has been true since (pending or firing)
    fired_at timestamptz,  -- when it last went firing
    resolved_at timestamptz,  -- when it last resolved
    last_true_at timestamptz,  -- the last evaluation that found the condition true (keep_firing_for counts from it)
    last_eval_at timestamptz not null,
    updated_at timestamptz not null default now(),
    unique (rule_id, fingerprint),
    foreign key (rule_id, project_id) references public.alert_rules (id, project_id) on delete cascade,
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index alert_instances_org_id_idx on public.alert_instances (org_id);
create index alert_instances_project_state_idx on public.alert_instances (project_id, state);

-- Append-only: every state change of every alert instance, with the value that caused it. The router reads
-- the rows not routed yet (routed_at null) in id order; they are written in the evaluation's transaction.
create table public.alert_transitions (
    id bigint generated always as identity primary key,
    org_id uuid not null,
    project_id uuid not null,
    rule_id uuid not null,
    rule_version integer not null,
    instance_id uuid not null,
    fingerprint text not null,
    labels jsonb not null,
    from_state text not null check (from_state in ('inactive', 'pending', 'firing', 'resolved')),
    to_state text not null check (to_state in ('inactive', 'pending', 'firing', 'resolved')),
    value double precision,
    at timestamptz not null,
    routed_at timestamptz,
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index alert_transitions_org_id_idx on public.alert_transitions (org_id);
create index alert_transitions_instance_idx on public.alert_transitions (instance_id, id);
create index alert_transitions_rule_idx on public.alert_transitions (rule_id, id desc);
create index alert_transitions_unrouted_idx on public.alert_transitions (id) where routed_at is null;

-- --- routing, silences --------------------------------------------------------------------------------------

-- The project's notification policy: the route tree (matchers, continue, group_by, timers, mute timings,
-- contact points, escalation policy), mute timings and inhibition rules, as one validated document.
create table public.notification_policies (
    project_id uuid primary key,
    org_id uuid not null,
    policy jsonb not null check (jsonb_typeof(policy) = 'object'),
    version integer not null default 1,
    updated_by uuid,
    updated_at timestamptz not null default now(),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index notification_policies_org_id_idx on public.notification_policies (org_id);

create table public.silences (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    matchers jsonb not null check (jsonb_typeof(matchers) = 'array'),
    starts_at timestamptz not null,
    ends_at timestamptz not null,
    comment text not null default '' check (length(comment) <= 2000),
    created_by uuid,
    created_by_key_id uuid,
    -- Expire the silence once every alert it silenced has resolved.
    expire_when_resolved boolean not null default false,
    expired_at timestamptz,  -- ended early (by hand, or when its alerts resolved)
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    check (ends_at > starts_at),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index silences_org_id_idx on public.silences (org_id);
create index silences_project_ends_idx on public.silences (project_id, ends_at desc);

-- --- notification groups ------------------------------------------------------------------------------------

-- An aggregation group: the alerts one route gathers under the same values of its group_by labels. Its timer
-- (next_flush_at: group_wait after the first alert, group_interval after a change, repeat_interval while
-- firing) is an SQS delay message, with the dispatcher's sweep as the safety net.
create table public.notification_groups (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    route_id text not null,  -- the route's path in the tree ("0.2.1") or its name
    group_key text not null,  -- a hash of the route and the group labels' values
    group_labels jsonb not null default '{}',
    status text not null default 'active' check (status in ('active', 'resolved')),
    next_flush_at timestamptz,
    last_flush_at timestamptz,
    flush_seq integer not null default 0,
    incident_id uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (project_id, group_key),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index notification_groups_org_id_idx on public.notification_groups (org_id);
create index notification_groups_due_idx on public.notification_groups (next_flush_at) where next_flush_at is not null;

-- The alerts of a group (added when routed there; kept until the group has notified their resolution).
create table public.notification_group_alerts (
    group_id uuid not null references public.notification_groups (id) on delete cascade,
    instance_id uuid not null references public.alert_instances (id) on delete cascade,
    org_id uuid not null,
    project_id uuid not null,
    added_at timestamptz not null default now(),
    primary key (group_id, instance_id)
);
create index notification_group_alerts_instance_idx on public.notification_group_alerts (instance_id);
create index notification_group_alerts_org_id_idx on public.notification_group_alerts (org_id);

-- What was sent for a group, and when: (group_id, seq) is unique, so a redelivered timer message, a retried
-- run or two concurrent dispatchers never notify twice.
create table public.notification_log (
    id bigint generated always as identity primary key,
    org_id uuid not null,
    project_id uuid not null,
    group_id uuid not null references public.notification_groups (id) on delete cascade,
    seq integer not null,
    incident_id uuid,
    reason text not null check (reason in ('first', 'changed', 'repeat', 'resolved')),
    firing jsonb not null default '[]',  -- fingerprints (and labels) of the firing alerts it announced
    resolved jsonb not null default '[]',
    receivers jsonb not null default '{}',  -- what the route names: contact points, escalation policy
    sent_at timestamptz not null default now(),
    unique (group_id, seq),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index notification_log_org_id_idx on public.notification_log (org_id);
create index notification_log_incident_idx on public.notification_log (incident_id, id);

-- --- incidents ----------------------------------------------------------------------------------------------

create table public.incidents (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid not null,
    number bigint not null,  -- per project, for people (#42)
    title text not null check (length(title) between 1 and 500),
    status text not null default 'triggered' check (status in ('triggered', 'acknowledged', 'resolved')),
    severity text not null default 'warning' check (severity in ('critical', 'error', 'warning', 'info')),
    service text,
    labels jsonb not null default '{}',
    group_id uuid references public.notification_groups (id) on delete set null,
    auto_resolve boolean not null default true,
    assignee_id uuid,
    snoozed_until timestamptz,
    triggered_at timestamptz not null default now(),
    acknowledged_at timestamptz,
    acknowledged_by uuid,
    resolved_at timestamptz,
    resolved_by uuid,
    resolution_note text check (length(resolution_note) <= 10000),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (project_id, number),
    check (status <> 'resolved' or resolved_at is not null),
    foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade
);
create index incidents_org_id_idx on public.incidents (org_id);
create index incidents_project_triggered_idx on public.incidents (project_id, triggered_at desc, id desc);
create index incidents_open_idx on public.incidents (project_id, status) where status <> 'resolved';
create index incidents_snoozed_idx on public.incidents (snoozed_until) where snoozed_until is not null;
alter table public.notification_groups
    add foreign key (incident_id) references public.incidents (id) on delete set null;

-- The alerts of an incident, with the rule version they fired under.
create table public.incident_alerts (
    incident_id uuid not null references public.incidents (id) on delete cascade,
    instance_id uuid not null,
    org_id uuid not null,
    project_id uuid not null,
    rule_id uuid not null,
    rule_version integer not null,
    fingerprint text not null,
    labels jsonb not null,
    first_fired_at timestamptz not null,
    resolved_at timestamptz,
    primary key (incident_id, instance_id)
);
create index incident_alerts_org_id_idx on public.incident_alerts (org_id);

-- The timeline: every alert transition, notification, acknowledgment, comment, assignment, with actor and time.
create table public.incident_events (
    id bigint generated always as identity primary key,
    org_id uuid not null,
    project_id uuid not null,
    incident_id uuid not null references public.incidents (id) on delete cascade,
    at timestamptz not null default now(),
    kind text not null check (kind ~ '^[a-z_.]{1,64}$'),
    actor_type text not null default 'system' check (actor_type in ('user', 'api_key', 'system')),
    actor_id uuid,
    details jsonb not null default '{}' check (jsonb_typeof(details) = 'object')
);
create index incident_events_incident_idx on public.incident_events (incident_id, id);
create index incident_events_org_id_idx on public.incident_events (org_id);

-- --- outbox ---------------------------------------------------------------------------------------------------

-- Events of the product (alert.firing, incident.triggered...), written in the transaction of the change that
-- causes them, so none is lost after a commit and none is sent for a rolled-back change. The outbound
-- webhooks deliver them (dispatched_at marks the ones handed over).
create table public.outbox_events (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    project_id uuid,
    type text not null check (type ~ '^[a-z_]+\.[a-z_]+$'),
    payload jsonb not null check (jsonb_typeof(payload) = 'object'),
    created_at timestamptz not null default now(),
    dispatched_at timestamptz
);
create index outbox_events_pending_idx on public.outbox_events (created_at) where dispatched_at is null;
create index outbox_events_org_id_idx on public.outbox_events (org_id);

-- --- grants and policies ------------------------------------------------------------------------------------

do $$
declare
    t text;
begin
    foreach t in array array['alert_rules', 'alert_rule_versions', 'alert_instances', 'alert_transitions',
        'notification_policies', 'silences', 'notification_groups', 'notification_group_alerts',
        'notification_log', 'incidents', 'incident_alerts', 'incident_events']
    loop
        execute format('grant select on public.%I to authenticated', t);
        execute format('revoke insert, update, delete, truncate on public.%I from anon, authenticated', t);
        execute format('grant select, insert, update, delete on public.%I to service_role', t);
        execute format('alter table public.%I enable row level security', t);
        -- The organization's members read; an API key reads its own project's rows.
        execute format(
            'create policy %I on public.%I for select to authenticated using ('
            ' org_id in (select private.user_org_ids())'
            ' or project_id = (select private.api_key_claim(''project_id''))::uuid)',
            t || '_select', t);
    end loop;
end
$$;
-- The outbox is the service's alone.
revoke all on public.outbox_events from anon, authenticated;
grant select, insert, update, delete on public.outbox_events to service_role;
alter table public.outbox_events enable row level security;

-- Live updates (Supabase Realtime): incidents and alert instances stream to subscribers, who receive only the
-- rows the policies above let them read. Full row images, so an update carries every column.
alter table public.incidents replica identity full;
alter table public.alert_instances replica identity full;
alter publication supabase_realtime add table public.incidents, public.alert_instances;
