-- name: _for_update
-- The envelope row is locked before its deliveries change (rows.py).
FOR UPDATE OF e

-- name: _hex_digest
encode(digest, 'hex')
