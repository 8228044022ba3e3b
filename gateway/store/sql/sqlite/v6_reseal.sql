-- Valise store schema, version 6 (sqlite): at the origin, each envelope's content key
-- wrapped to the origin's own encryption key (HPKE, envelope/reseal.py), so that mail
-- sealed to a key revoked later can be re-sealed (valise queue reseal). NULL for
-- envelopes this site did not seal. Keep in step with the other backend.

ALTER TABLE envelopes ADD COLUMN escrow BLOB;
