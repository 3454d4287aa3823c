-- detect-anomalies' re-score base (docs/anomalies-job.md, "Late data"): the fold's state before the series' re-score
-- tail, kept apart from ``state`` (the state after the last point and the tail). ``state`` is rewritten every run;
-- ``base`` only every ten runs or so (when the tail is folded into it) and read only then or for a re-score. Apart,
-- an update that leaves it alone keeps its TOAST value as it is: a run writes one fold state per series, not two
-- (the seasonal profiles make a state about 15 kB).
alter table public.anomaly_series add column base jsonb;
