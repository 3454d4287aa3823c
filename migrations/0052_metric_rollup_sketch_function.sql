-- public.metric_rollup_sketch(resolution, count, increase, min, sketch): a rollup row's sketch as every reader should
-- read it. A 1m row of one finite gauge value stores none (migration 0050); its sketch is that value's one entry, by
-- observai.metrics.sketch's rule: zero below 1e-09, else index ceil(ln(|v|) / ln(gamma)) in the positive or the
-- negative store (gamma = 1.01 / 0.99; ln(gamma) written as Python's float repr, the same double). Postgres' ln is
-- the C library's log, as Python's math.log. SQL inlines the function: the query engine's percentiles read it per
-- row (observai.metrics.sketch_sql), and so can a dashboard or a PostgREST view:
--   select bucket_start, metric_rollup_sketch(resolution, count, increase, min, sketch) from metric_rollups ...
create or replace function public.metric_rollup_sketch(
    resolution integer, count bigint, increase double precision, min double precision, sketch jsonb
) returns jsonb
language sql immutable parallel safe
as $$
    select coalesce(sketch, case when resolution = 60 and count = 1 and increase is null
            and abs(min) < 'Infinity'::float8 then
        case
            when abs(min) < 1e-09 then '{"p": {}, "n": {}, "z": 1}'::jsonb
            when min > 0 then jsonb_build_object(
                'p', jsonb_build_object(ceil(ln(min) / 0.020000666706669435)::integer::text, 1), 'n', '{}'::jsonb,
                'z', 0)
            else jsonb_build_object(
                'p', '{}'::jsonb, 'n', jsonb_build_object(ceil(ln(-min) / 0.020000666706669435)::integer::text, 1),
                'z', 0)
        end
    end)
$$;

grant execute on function public.metric_rollup_sketch(integer, bigint, double precision, double precision, jsonb)
    to authenticated, service_role;
