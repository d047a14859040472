-- Data at rest (issue #20). The sealed columns (workflows.state, outbox.command, inbox.event,
-- events.detail, staff_tasks.reason, patients.contact) hold blobs: a version byte, the id of the
-- data key, then XChaCha20-Poly1305 nonce and ciphertext bound to the row. The engine seals the rows
-- written in clear before this migration right after it runs (SQL cannot encrypt).

-- Patient contacts sealed before key ids existed: mark them with the legacy version byte 0.
UPDATE patients SET contact = unhex('00' || hex(contact));

-- The audit trail stays append-only. The one change allowed is replacing a sealed detail with the
-- same detail sealed again (key rotation, sealing legacy rows): every other column is fixed, and
-- the new detail must be a sealed blob. The AEAD bound to the row keeps its content authentic.
DROP TRIGGER events_append_only_update;
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
WHEN NEW.id IS NOT OLD.id OR NEW.workflow_id IS NOT OLD.workflow_id OR NEW.at IS NOT OLD.at
    OR NEW.actor IS NOT OLD.actor OR NEW.kind IS NOT OLD.kind
    OR typeof(NEW.detail) <> 'blob' OR substr(NEW.detail, 1, 1) <> X'01'
BEGIN SELECT RAISE(ABORT, 'the events table is append-only'); END;
