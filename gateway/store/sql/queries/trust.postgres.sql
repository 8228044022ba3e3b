-- name: _for_update
-- The envelope row is locked before its deliveries change (rows.py).
FOR UPDATE OF e

-- name: _hex_digest
encode(digest, 'hex')

-- name: _pending
-- A time-stamp still to get: the predicate of the partial index envelopes_stamp_pending
-- (v4_timestamps.sql), as written there.
stamp_pending

-- name: _head_bytes
-- How many bytes of the stored copy its prefix and head take (store/trust.py head_bytes):
-- the 12-byte prefix ends with the head's length, big-endian (envelope/framing.py), at
-- most :max_head of it; a copy shorter than its prefix has no head.
(12 + least(CAST(:max_head AS bigint), CASE WHEN length(data) < 12 THEN 0
    ELSE (get_byte(data, 8)::bigint << 24) | (get_byte(data, 9) << 16)
         | (get_byte(data, 10) << 8) | get_byte(data, 11) END))::int
