-- name: _for_update
-- (nothing: the store's single writer)

-- name: _hex_digest
-- (upper-case hex: split_digests reads either case)
hex(digest)

-- name: _pending
-- A time-stamp still to get: the predicate of the partial index envelopes_stamp_pending
-- (v4_timestamps.sql), as written there.
stamp_pending = 1
