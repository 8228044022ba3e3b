-- name: _for_update
-- (nothing: the store's single writer)

-- name: _hex_digest
-- (upper-case hex: split_digests reads either case)
hex(digest)

-- name: _pending
-- A time-stamp still to get: the predicate of the partial index envelopes_stamp_pending
-- (v4_timestamps.sql), as written there.
stamp_pending = 1

-- name: _head_bytes
-- How many bytes of the stored copy its prefix and head take (store/trust.py head_bytes,
-- registered on the connection as valise_head_bytes: SQLite reads no integer from a blob).
valise_head_bytes(substr(data, 1, 12), :max_head)
