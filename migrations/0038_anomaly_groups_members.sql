-- The anomalies API and the correlation: a group's members by group (GET .../anomaly-groups reads them per page;
-- the correlation sums a group up from them), and a project's anomaly events not yet in a group (what each
-- correlation run starts from: few rows, found without scanning the project's history).
create index anomaly_events_group_idx on public.anomaly_events (group_id) where group_id is not null;
create index anomaly_events_ungrouped_idx on public.anomaly_events (project_id, started_at) where group_id is null;
