-- name: _skip_locked
-- A claim skips the rows another process is claiming, so two gateways never take one.
FOR UPDATE OF w SKIP LOCKED
