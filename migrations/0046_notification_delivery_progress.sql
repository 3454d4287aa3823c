-- A delivery sent in parts (an e-mail to more than 50 addresses is several SES messages) remembers how many parts
-- the receiver accepted, so that a retry after a failed part sends only the rest, never the earlier ones again.
alter table public.notification_deliveries
    add column progress integer not null default 0 check (progress >= 0);
