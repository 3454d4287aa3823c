-- Why a webhook message failed for good without (another) delivery attempt: its endpoint was deleted while it was
-- waiting. The attempts say why each attempt failed; this says why no further attempt will be made. Readable by the
-- API roles through the table's existing select grant and policy (migration 0023).
alter table public.webhook_messages
    add column failure_reason text check (length(failure_reason) <= 500);
