-- Rows of migration 0018 that carry project_id without their own foreign key to the project: they now go with
-- the project (as every project-owned table does; the purge of deleted projects relies on it). incident_alerts
-- and notification_group_alerts already went with their incident or group; outbox_events had nothing: a deleted
-- project's undelivered events have no endpoint left to go to.
alter table public.incident_alerts
    add foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade;
alter table public.incident_events
    add foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade;
alter table public.notification_group_alerts
    add foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade;
alter table public.outbox_events
    add foreign key (project_id, org_id) references public.projects (id, org_id) on delete cascade;
create index outbox_events_project_id_idx on public.outbox_events (project_id) where project_id is not null;
