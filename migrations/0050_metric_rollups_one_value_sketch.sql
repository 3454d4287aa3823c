-- A 1m row of one finite gauge value (count 1, no increase, a finite min) stores no sketch: its sketch is that
-- value's one entry, which readers compute from min (observai.metrics.sketch_sql.sketch_text; issue 17: the sketch's
-- jsonb was a third of the cost of writing the row, and such rows are most 1m rows). Rows written before keep theirs.
comment on column public.metric_rollups.sketch is
    'DDSketch {"p":{index:count},"n":{...},"z":zeros}; null without observations, and for a 1m row of one finite '
    'gauge value (count 1, increase null): its sketch is then that value''s one entry (index ceil(ln|min|/ln gamma))';
