-- Consent survives key rotation (PostgreSQL twin of ../0007_consent_rekey.sql): the number sealed
-- with the data key, and the id of the key its hash was made with.
ALTER TABLE sms_consent ADD COLUMN phone_sealed BYTEA;
ALTER TABLE sms_consent ADD COLUMN key_id BIGINT;
