-- Claiming due work (claim.py): what SQLite runs after reading the due rows.

-- name: take
UPDATE deliveries SET state = 'sending', lease_owner = :owner, lease_until = :until,
    attempts = attempts + 1, updated_at = :now
WHERE message_id = :message_id AND peer = :peer
