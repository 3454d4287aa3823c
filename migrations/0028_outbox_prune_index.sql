-- The delivery sweep prunes dispatched outbox events older than 7 days, oldest first and bounded: this index
-- finds them without scanning the table (the pending index covers only the undispatched ones).
create index outbox_events_dispatched_idx on public.outbox_events (dispatched_at) where dispatched_at is not null;
