-- Acknowledge and resolve links (issue 14, section 5): an action taken through a signed link that names no person
-- is recorded with the actor type 'link' (the timeline and the audit log say "via a link", not "the system").
alter table public.audit_log drop constraint audit_log_actor_type_check;
alter table public.audit_log
    add constraint audit_log_actor_type_check check (actor_type in ('user', 'api_key', 'system', 'link'));

alter table public.incident_events drop constraint incident_events_actor_type_check;
alter table public.incident_events
    add constraint incident_events_actor_type_check check (actor_type in ('user', 'api_key', 'system', 'link'));
