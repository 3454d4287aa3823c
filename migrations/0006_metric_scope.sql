-- The instrumentation scope of a metric (OTLP InstrumentationScope: name, version, attributes), kept on
-- its series: every point of a series comes from the same scope.
alter table public.metric_series add column if not exists scope jsonb;
