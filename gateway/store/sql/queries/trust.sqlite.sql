-- name: _for_update
-- (nothing: the store's single writer)

-- name: _hex_digest
-- (upper-case hex: split_digests reads either case)
hex(digest)
