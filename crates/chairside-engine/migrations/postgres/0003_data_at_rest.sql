-- Data at rest (PostgreSQL twin of ../0003_data_at_rest.sql). A PostgreSQL database never held
-- rows in clear (its sealed columns are BYTEA from 0001), so there is nothing to mark as legacy.
--
-- The audit trail stays append-only. The one change allowed is replacing a sealed detail with the
-- same detail sealed again (key rotation): every other column is fixed, and the new detail must be
-- a sealed value (version byte 1). The AEAD bound to the row keeps its content authentic.
CREATE FUNCTION chairside_events_reseal_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.workflow_id IS DISTINCT FROM OLD.workflow_id
        OR NEW.at IS DISTINCT FROM OLD.at OR NEW.actor IS DISTINCT FROM OLD.actor
        OR NEW.kind IS DISTINCT FROM OLD.kind
        OR length(NEW.detail) < 1 OR get_byte(NEW.detail, 0) <> 1 THEN
        RAISE EXCEPTION 'the events table is append-only';
    END IF;
    RETURN NEW;
END;
$$;
DROP TRIGGER events_append_only_update ON events;
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
FOR EACH ROW EXECUTE FUNCTION chairside_events_reseal_only();
