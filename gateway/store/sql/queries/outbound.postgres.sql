-- name: lock_expired
-- The envelope rows expire() changes something of, locked first (rows.py: lock order),
-- and no other: a hub's relays forwarded long ago stay unlocked.
SELECT e.message_id FROM envelopes e
WHERE e.expires <= :now
  AND (EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = e.message_id
               AND d.state = ANY(:undelivered))
       OR (e.received_from IS NULL AND e.completed_at IS NULL
           AND EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = e.message_id
                       AND t.outcome = 'open' AND t.reason <> :recheck))
       OR (e.received_from IS NULL AND e.receipt IS NULL
           AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = e.message_id
                       AND d.state = 'forwarded')
           AND NOT EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = e.message_id)))
ORDER BY e.message_id
FOR NO KEY UPDATE OF e

-- name: forwarded_batch
-- The courier's batch in one statement (unnest of parallel arrays), history in order.
WITH items AS (
    SELECT * FROM unnest(CAST(:mids AS text[]), CAST(:peers AS text[]))
    WITH ORDINALITY AS t(mid, peer, n)
), moved AS (
    UPDATE deliveries d SET state = 'forwarded', lease_owner = NULL,
        lease_until = NULL, next_attempt = NULL, last_reason = :reason, updated_at = :at
    FROM items i WHERE d.message_id = i.mid AND d.peer = i.peer
      AND d.state = 'sending' AND d.lease_owner = :owner
    RETURNING d.message_id, d.peer, i.n
)
INSERT INTO history (message_id, peer, state, reason, at)
SELECT message_id, peer, 'forwarded', :reason, :at FROM moved ORDER BY n

-- name: record_acks
-- record_ack (destinations.py) for a courier's batch of receipt envelopes sealed here, in
-- one statement: a round trip per message counts on PostgreSQL (issue 13's bench).
WITH r AS (
    SELECT * FROM unnest(CAST(:mids AS text[]), CAST(:proofs AS bytea[]))
    WITH ORDINALITY AS t(mid, proof, n)
), stored AS (
    UPDATE envelopes e SET receipt = r.proof
    FROM r WHERE e.message_id = r.mid AND e.receipt IS NULL
      AND NOT EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = e.message_id)
    RETURNING e.message_id, r.n
), moved AS (
    UPDATE deliveries d SET state = 'delivered', next_attempt = NULL, lease_owner = NULL,
        lease_until = NULL, last_reason = :reason, updated_at = :at
    FROM stored s WHERE d.message_id = s.message_id AND d.state <> 'delivered'
    RETURNING d.message_id, d.peer, s.n
)
INSERT INTO history (message_id, peer, state, reason, at)
SELECT message_id, peer, 'delivered', :reason, :at FROM (
    SELECT message_id, peer, n FROM moved
    UNION ALL
    SELECT s.message_id, NULL, s.n FROM stored s
    WHERE NOT EXISTS (SELECT 1 FROM moved m WHERE m.message_id = s.message_id)
) x ORDER BY n, peer
