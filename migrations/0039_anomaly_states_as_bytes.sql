-- Fold states are stored as JSON bytes (bytea), not jsonb: every run rewrites each series' state (a few kB of floats),
-- and turning each float into a jsonb numeric was most of a detect-anomalies run's write time, for a value nobody
-- queries (observai.anomalies.job reads and writes it whole).
alter table public.anomaly_series alter column state type bytea using convert_to(state::text, 'UTF8');
alter table public.anomaly_series alter column base type bytea using convert_to(base::text, 'UTF8');
-- Kept compressed in the row (see 0037): a type change resets the column's storage to the type's default.
alter table public.anomaly_series alter column state set storage main;
