-- name: _for_update
-- The envelope row is locked before its deliveries change (rows.py).
FOR UPDATE OF e

-- name: _hex_digest
encode(digest, 'hex')

-- name: _pending
-- A time-stamp still to get: the predicate of the partial index envelopes_stamp_pending
-- (v4_timestamps.sql), as written there.
stamp_pending
