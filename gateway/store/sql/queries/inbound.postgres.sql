-- name: _for_update
-- The inbound rows a settlement or a state change moves, locked until it commits.
FOR UPDATE
