-- The idempotency key of each command, stored with it when it is queued (issue #19: durable
-- transactions per external call). A claim that finds a workflow's next due item is a command
-- journals that command's intent in the claim's own transaction, under this key, so the call
-- needs no transaction of its own before it. NULL for a command queued before this migration or
-- by a path that does not know its key: the runner then journals the intent as before.
ALTER TABLE outbox ADD COLUMN idempotency_key TEXT;
