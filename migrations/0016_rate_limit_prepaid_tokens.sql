-- Prepaid rate-limit tokens (observai.ratelimit): while a bucket is at least half full, a container takes
-- several tokens in one statement and spends them on its next requests with that key, instead of one statement
-- per request. ``taken`` is how many tokens the bucket's last statement took (1, or the prepaid batch): the
-- statement returns it, since RETURNING cannot see the level the bucket was at before.
alter table public.rate_limit_buckets add column taken smallint not null default 1;
