-- The row primitives every concern shares (rows.py): history rows, state moves, the
-- envelope row lock.

-- name: add_history
INSERT INTO history (message_id, peer, state, reason, at)
VALUES (:message_id, :peer, :state, :reason, :at)

-- name: set_state
UPDATE deliveries SET state = :to, next_attempt = :next_attempt, lease_owner = NULL,
    lease_until = NULL, last_reason = :reason, updated_at = :at
WHERE message_id = :message_id AND state = ANY(:from_states)
  AND (:all_peers OR peer = ANY(:peers))
RETURNING peer

-- name: lock_messages
-- The envelope rows of these messages, in id order (locked on PostgreSQL: see rows.py).
SELECT message_id FROM envelopes WHERE message_id = ANY(:ids)
ORDER BY message_id
/*_lock*/

-- name: message_exists
SELECT 1 FROM envelopes WHERE message_id = :message_id
