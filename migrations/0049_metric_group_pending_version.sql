-- Each queued (metric, minute) of the group rollups carries a version, bumped whenever a per-series run queues the
-- minute again (issue 17). The group stage runs beside the per-series runs, in transactions of its own: it takes a
-- chunk of the queue, reads the per-series rows and deletes what it took only where the version is still the one
-- it took. A per-series run that re-rolls a taken minute meanwhile (its rows not yet visible to the group stage)
-- therefore leaves the minute queued for the next group run, where before its "already queued" would have been
-- absorbed by the deletion.
alter table public.metric_group_pending add column version bigint not null default 0;
