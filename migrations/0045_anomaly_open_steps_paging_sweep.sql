-- detect-anomalies (docs/anomalies-job.md):
--
-- The open step: a run also scores the steps that have not settled yet (the current, partial minute) from raw
-- points, provisionally. Their points are stored marked `provisional` (the baseline state is not fed them); the run
-- after the step settles re-scores it from its closed value and clears the mark.
alter table public.anomaly_points add column provisional boolean not null default false;

-- Dropping a detector's scored points without deleting them in the API's transaction: a new query, new settings, a
-- new interval or a delete bump the detector's `generation`; points are written with the generation they were
-- scored under and read only at the detector's current one, so the older ones are invisible at once, and the job's
-- sweep deletes them in bounded batches. `swept_generation`: every point below it is gone (the sweep's marker).
alter table public.anomaly_points add column generation integer not null default 0;
alter table public.anomaly_detectors add column generation integer not null default 0;
alter table public.anomaly_detectors add column swept_generation integer not null default 0;

-- Paging through a detector's series: a detector matching more series than one metric query reads is scored a
-- shard of its series at a time (the labels' hash), each shard in its own transaction, resuming at `page_next`;
-- `page_shards` shards make one cycle over [processed_until, page_to). `series_matched`: the metric series its
-- query matched when the cycle started (the API shows it; at most observai.anomalies.job.MAX_SERIES_PER_DETECTOR).
alter table public.anomaly_detectors add column series_matched integer check (series_matched >= 0);
alter table public.anomaly_detectors add column page_shards integer check (page_shards >= 1);
alter table public.anomaly_detectors add column page_next integer check (page_next >= 0);
alter table public.anomaly_detectors add column page_to timestamptz;
