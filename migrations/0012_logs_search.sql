-- Log search support: a lookup of a log line by id, and the full-text index reached under RLS.
--
-- 1. logs_id_brin_idx: the context route finds a log line by its id. Ids come from a sequence, so within a
--    partition they grow with the physical row order: a BRIN index (a few kB per day) narrows the lookup to a
--    few pages per partition, at almost no cost to ingestion (a btree would cost every insert).
--
-- 2. private.log_search_candidates: Row Level Security lets an index serve a user's condition only when the
--    condition's operator is LEAKPROOF, and the tsvector match (@@) is not: under RLS the GIN index
--    logs_search_idx is never used, and a rare word would read every row of the range. This function reads
--    the index for the caller (security definer) and returns only (time, id) of matching rows that the caller's
--    own policy shows (the same condition as logs_select, applied as a plain filter here). Its SQL is fixed;
--    the caller passes a tsquery value, never SQL. The log search then reads those rows under RLS as usual.
create index logs_id_brin_idx on public.logs using brin (id) with (pages_per_range = 32, autosummarize = on);

create function private.log_search_candidates(
    project uuid, query tsquery, from_time timestamptz, before_time timestamptz, before_id bigint, max_rows integer
)
returns table (log_time timestamptz, log_id bigint)
language plpgsql stable security definer
set search_path = ''
as $$
begin
    -- EXECUTE plans with the actual values: partitions outside the range are pruned, and the planner sees how
    -- common the words are (GIN for rare ones, the time index for common ones).
    return query execute
        'select l.time, l.id from public.logs l'
        ' where l.project_id = $1 and l.time >= $3 and l.time <= $4 and (l.time, l.id) < ($4, $5)'
        ' and l.search @@ $2'
        ' and (l.org_id in (select private.user_org_ids())'
        '      or l.project_id = (select private.api_key_claim(''project_id''))::uuid)'
        ' order by l.time desc, l.id desc limit least(greatest($6, 0), 10000)'
        using project, query, from_time, before_time, before_id, max_rows;
end
$$;
revoke execute on function private.log_search_candidates(uuid, tsquery, timestamptz, timestamptz, bigint, integer)
    from public, anon;
grant execute on function private.log_search_candidates(uuid, tsquery, timestamptz, timestamptz, bigint, integer)
    to authenticated, service_role;
