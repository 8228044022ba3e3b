-- Outbound work and receipts (outbound.py); claiming and accepting are each backend's
-- own strategy (sqlite.py, postgres.py).

-- name: get_envelope
SELECT message_id, origin, destinations, digest, created, expires, priority,
       received_from, data, doc_class, chain
FROM envelopes WHERE message_id = :message_id

-- name: peers
-- Peers with due work: the distinct peers by a skip scan of deliveries_claim (a few
-- index seeks per peer, whatever the table holds), then one seek each for queued work;
-- deferred-and-due and expired leases by the (state, next_attempt) index.
WITH RECURSIVE peers(peer) AS (
    SELECT min(peer) FROM deliveries
    UNION ALL
    SELECT (SELECT min(d.peer) FROM deliveries d WHERE d.peer > peers.peer)
    FROM peers WHERE peers.peer IS NOT NULL
)
SELECT peer FROM peers WHERE peer IS NOT NULL AND EXISTS (
    SELECT 1 FROM deliveries d WHERE d.peer = peers.peer AND d.state = 'queued')
UNION
SELECT peer FROM deliveries WHERE state = 'deferred' AND next_attempt <= :now
UNION
SELECT peer FROM deliveries WHERE state = 'sending' AND lease_until < :now
ORDER BY 1

-- name: next_due
SELECT min(next_attempt) FROM deliveries WHERE state = 'deferred'

-- name: forwarded_one
UPDATE deliveries SET state = 'forwarded', lease_owner = NULL, lease_until = NULL,
    next_attempt = NULL, last_reason = :reason, updated_at = :at
WHERE message_id = :message_id AND peer = :peer AND state = 'sending'
  AND lease_owner = :owner

-- name: defer
UPDATE deliveries SET state = 'deferred', next_attempt = :next_attempt, lease_owner = NULL,
    lease_until = NULL, last_reason = :reason, updated_at = :at
WHERE message_id = :message_id AND peer = :peer AND state = 'sending'
  AND lease_owner = :owner

-- name: fail
UPDATE deliveries SET state = 'failed', lease_owner = NULL, lease_until = NULL,
    last_reason = :reason, updated_at = :at
WHERE message_id = :message_id AND state = ANY(:undelivered)
  AND (:all_peers OR peer = :peer)
  AND (:any_owner OR (state = 'sending' AND lease_owner = :owner))
RETURNING peer

-- name: expire
-- Every undelivered hop row of an expired message; at the origin, also a forwarded one
-- with a destination through it still open (for a message without destination rows:
-- never receipted). A row waiting for its kept receipt's re-check (:recheck) waits.
UPDATE deliveries SET state = 'failed', lease_owner = NULL, lease_until = NULL,
    last_reason = :reason, updated_at = :now
WHERE (state = ANY(:undelivered)
       OR (state = 'forwarded'
           AND message_id IN (SELECT message_id FROM envelopes WHERE received_from IS NULL)
           AND (EXISTS (SELECT 1 FROM destinations t
                        WHERE t.message_id = deliveries.message_id
                          AND t.hop = deliveries.peer AND t.outcome = 'open'
                          AND t.reason <> :recheck)
                OR (NOT EXISTS (SELECT 1 FROM destinations t
                                WHERE t.message_id = deliveries.message_id)
                    AND message_id IN (SELECT message_id FROM envelopes
                                       WHERE receipt IS NULL)))))
  AND message_id IN (SELECT message_id FROM envelopes WHERE expires <= :now)
RETURNING message_id, peer

-- name: expired_at_origin
-- Expired messages sent from here with a destination still open (not waiting for its
-- re-check): the origin closes every one of them.
SELECT e.message_id FROM envelopes e
WHERE e.expires <= :now AND e.received_from IS NULL AND e.completed_at IS NULL
  AND EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = e.message_id
              AND t.outcome = 'open' AND t.reason <> :recheck)

-- name: forget_tombstones
DELETE FROM tombstones WHERE expires <= :before

-- name: sites
SELECT site FROM destinations WHERE message_id = :message_id ORDER BY site

-- name: receipt
SELECT e.receipt,
       (SELECT count(*) FROM destinations t WHERE t.message_id = e.message_id) AS n,
       (SELECT t.receipt FROM destinations t WHERE t.message_id = e.message_id LIMIT 1)
        AS only
FROM envelopes e WHERE e.message_id = :message_id
