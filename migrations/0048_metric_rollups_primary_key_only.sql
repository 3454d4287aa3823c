-- metric_rollups keeps only its primary key (project_id, series_id, resolution, bucket_start). The second index,
-- (project_id, resolution, bucket_start), served one reader: the group rollups' read of every series' 1m rows in a
-- range of minutes, which now reads each series of the metric by the primary key instead. Maintaining it was about
-- a third of the cost of writing a rollup row, and the aggregation job writes more than one row per minute of
-- every series (issue 17: the roll-ups must keep up with ingestion).
drop index if exists public.metric_rollups_project_id_resolution_bucket_start_idx;
