-- The operator's calls and the read-only views (operator.py).

-- name: tombstone
-- The tombstone outlives the envelope until its expiry: a copy replayed to /v1/hop is
-- then refused as deleted instead of stored again.
INSERT INTO tombstones (message_id, expires, deleted_at, reason)
SELECT message_id, expires, :at, :reason FROM envelopes
WHERE message_id = :message_id AND expires > :at
ON CONFLICT (message_id) DO NOTHING

-- name: delete_deliveries
DELETE FROM deliveries WHERE message_id = :message_id

-- name: delete_inbound
DELETE FROM inbound WHERE message_id = :message_id

-- name: delete_envelope
DELETE FROM envelopes WHERE message_id = :message_id

-- name: queue
-- :todo: only what is still to do (:todo_states, records.TODO_STATES; and a message
-- sent from here forwarded with a destination through that hop still open; without
-- destination rows, not receipted yet). The last two columns count the destinations
-- through the hop.
SELECT d.message_id, d.peer, d.state, d.attempts, d.next_attempt, d.last_reason,
       e.origin, e.destinations, e.created, e.expires, e.priority, e.size,
       e.accepted_at, d.updated_at,
       (SELECT count(*) FROM destinations t
        WHERE t.message_id = d.message_id AND t.hop = d.peer AND t.outcome = 'open'),
       (SELECT count(*) FROM destinations t WHERE t.message_id = d.message_id AND t.hop = d.peer)
FROM deliveries d JOIN envelopes e ON e.message_id = d.message_id
WHERE (:any_peer OR d.peer = :peer) AND (:any_state OR d.state = :state)
  AND (NOT :todo OR d.state = ANY(:todo_states)
       OR (d.state = 'forwarded' AND e.received_from IS NULL AND e.doc_class <> 'receipt'
           AND (EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = d.message_id
                        AND t.hop = d.peer AND t.outcome = 'open')
                OR (e.receipt IS NULL AND NOT EXISTS (SELECT 1 FROM destinations t
                                                      WHERE t.message_id = d.message_id)))))
ORDER BY d.rank, d.created, d.message_id, d.peer

-- name: history
SELECT at, peer, state, reason FROM history WHERE message_id = :message_id ORDER BY id

-- name: depths
SELECT peer, state, count(*) FROM deliveries GROUP BY peer, state

-- name: ping
SELECT 1
