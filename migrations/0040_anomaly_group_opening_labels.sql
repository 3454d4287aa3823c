-- The labels a correlated anomaly group had when it opened, never narrowed afterwards: the identity of its alert for
-- an `anomaly` rule per group. shared_labels narrow as members with other labels join (host a, then host b: only
-- service stays), and an alert whose labels change is another alert: it would notify again for the same group.
alter table public.anomaly_groups add column opening_labels jsonb
    check (opening_labels is null or jsonb_typeof(opening_labels) = 'object');
update public.anomaly_groups set opening_labels = shared_labels where opening_labels is null;
