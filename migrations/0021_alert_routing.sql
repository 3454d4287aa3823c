-- Alert routing bookkeeping (on top of 0018): what a notification group has announced of each of its alerts, so
-- a resolution is announced only for an alert that was announced firing (also when it resolved while silenced),
-- and the indexes of the routing API's lists.

alter table public.notification_group_alerts
    add column notified_state text check (notified_state in ('firing', 'resolved')),
    add column notified_at timestamptz;

-- GET .../alert-groups: a project's active groups, newest first.
create index notification_groups_project_active_idx on public.notification_groups (project_id, created_at desc, id desc)
    where status = 'active';
-- GET .../notification-log: a project's log, newest first.
create index notification_log_project_idx on public.notification_log (project_id, id desc);
-- The dispatcher's look-up of the silences in force in a project.
create index silences_project_active_idx on public.silences (project_id, starts_at) where expired_at is null;
