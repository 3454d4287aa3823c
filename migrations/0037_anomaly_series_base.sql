-- detect-anomalies' re-score base (docs/anomalies-job.md, "Late data"): the fold's state before the series' re-score
-- tail, kept apart from ``state`` (the state after the last point and the tail). ``state`` is rewritten every run;
-- ``base`` only every ten runs or so (when the tail is folded into it) and read only then or for a re-score. Apart,
-- an update that leaves it alone keeps its TOAST value as it is: a run writes one fold state per series, not two
-- (the seasonal profiles make a state about 15 kB).
alter table public.anomaly_series add column base jsonb;

-- Every run rewrites each series' state (a few kB of JSON with auto's seasonal profiles): kept compressed in the row
-- when it fits (main: no TOAST table and index rows to write and delete each time), and half of each page left free
-- so the update stays on its page (a HOT update: no index entry either). The base stays out of line (extended, the
-- default): an update that leaves it alone copies its TOAST pointer, not the value.
alter table public.anomaly_series alter column state set storage main;
alter table public.anomaly_series set (fillfactor = 50);
