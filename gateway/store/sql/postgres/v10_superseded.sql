-- Valise store schema, version 10 (postgres): the digests of the copies an envelope had
-- before it was re-sealed or re-signed here (gateway/reseal.py), hex, one after the
-- other. A copy may have reached its destination before it was replaced: the receipt
-- then names that copy's digest, and the origin accepts it (gateway/local_delivery.py).
-- Keep in step with the other backend.

ALTER TABLE envelopes ADD COLUMN superseded TEXT NOT NULL DEFAULT '';
