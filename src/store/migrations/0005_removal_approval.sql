-- Archives and deletes beyond the configured limit wait for a person: the one
-- who approved a removal write, NULL while none has. Approving is recorded in
-- the audit log as well.
ALTER TABLE outbox ADD COLUMN approved_by TEXT;
