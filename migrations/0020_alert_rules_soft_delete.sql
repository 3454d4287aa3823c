-- Deleting an alert rule is a soft delete (observai.alerts.rules.delete_rule).
--
-- A rule's alert instances hang off it (alert_instances → alert_rules on delete cascade, and notification groups
-- → alert_instances): a hard delete would erase its firing alerts before the router could notify their
-- resolution, and leave incidents with alerts that vanished. So a DELETE resolves the rule's firing alerts (with
-- transitions the router notifies), disables the rule and stamps deleted_at, in one transaction. The API hides
-- deleted rules everywhere but in their versions and history; the evaluator never sees them (they are disabled,
-- and the check below keeps it so); the name is free again for a new rule.

alter table public.alert_rules add column deleted_at timestamptz;
alter table public.alert_rules add constraint alert_rules_deleted_not_enabled check (deleted_at is null or not enabled);

-- The name is unique among the project's live rules only.
alter table public.alert_rules drop constraint alert_rules_project_id_name_key;
create unique index alert_rules_project_live_name_idx on public.alert_rules (project_id, name) where deleted_at is null;

-- Readers (PostgREST, Realtime, the API's tenant reads) see live rules only; versions and transitions of a
-- deleted rule stay readable under their own policies. The service role (evaluator, router) is not bound by it.
drop policy alert_rules_select on public.alert_rules;
create policy alert_rules_select on public.alert_rules for select to authenticated using (
    deleted_at is null
    and (org_id in (select private.user_org_ids())
         or project_id = (select private.api_key_claim('project_id'))::uuid));
