-- Consent survives key rotation (TCPA: withdrawal always wins). `sms_consent.phone_key` is a keyed
-- hash of the number, so a row hashed under a key that is later removed from the configuration
-- would no longer be found, and a patient who texted STOP could be texted again. Each row now also
-- keeps the number sealed with the data key (bound to the row by `sms_consent:{practice}/{hash}`)
-- and the id of the key its hash was made with, so `chairside rotate-key` can re-hash it.
--
-- Rows written before this migration have neither (NULL): nothing here can recover the number.
-- They are sealed and re-hashed on the next write for their number; until then `rotate-key` counts
-- them and says the previous keys must stay.
ALTER TABLE sms_consent ADD COLUMN phone_sealed BLOB;
ALTER TABLE sms_consent ADD COLUMN key_id INTEGER;
