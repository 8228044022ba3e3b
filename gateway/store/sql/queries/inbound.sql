-- The destination's part (inbound.py): inbound items and their settlement, and what a
-- receipt is checked against.

-- name: state
SELECT state FROM inbound WHERE message_id = :message_id
/*_for_update*/

-- name: set_state
UPDATE inbound SET state = :state, updated_at = :at WHERE message_id = :message_id

-- name: inbox
SELECT i.message_id, e.origin, i.state, i.received_at, e.size, e.doc_class
FROM inbound i JOIN envelopes e ON e.message_id = i.message_id
WHERE (:any_state OR i.state = :state)
  AND (:from_start OR i.received_at > :after_at
       OR (i.received_at = :after_at AND i.message_id > :after_id))
ORDER BY i.received_at, i.message_id LIMIT :limit

-- name: received
-- The oldest items still 'received', as many as fit in :max_bytes (at least one).
WITH firsts AS (
    SELECT i.message_id, i.received_at, e.size
    FROM inbound i JOIN envelopes e ON e.message_id = i.message_id
    WHERE i.state = 'received'
    ORDER BY i.received_at, i.message_id LIMIT :limit
), sized AS (
    SELECT message_id, received_at, size,
           sum(size) OVER (ORDER BY received_at, message_id ROWS UNBOUNDED PRECEDING) AS upto
    FROM firsts
)
SELECT e.message_id, e.origin, e.destinations, e.digest, e.created, e.expires, e.priority,
       e.received_from, e.data, e.doc_class, e.chain
FROM sized s JOIN envelopes e ON e.message_id = s.message_id
WHERE s.upto <= :max_bytes OR s.upto = s.size
ORDER BY s.received_at, s.message_id

-- name: waiting
-- The batch's items still 'received', in id order (locked until the end on PostgreSQL:
-- still so when settled).
SELECT message_id FROM inbound WHERE message_id = ANY(:ids) AND state = 'received'
ORDER BY message_id
/*_for_update*/

-- name: settle
UPDATE inbound SET state = :state, updated_at = :at
WHERE message_id = :message_id AND state = 'received'

-- name: sent
SELECT message_id, destinations, digest, receipt, doc_class, superseded,
       received_from IS NULL AS sent_here
FROM envelopes WHERE message_id = ANY(:ids)

-- name: superseded
SELECT message_id, superseded FROM envelopes
WHERE superseded <> '' AND message_id = ANY(:ids)

-- name: superseded_heads
SELECT digest, head FROM superseded_heads WHERE message_id = :message_id

-- name: routes
SELECT message_id, origin, destinations, doc_class FROM envelopes
WHERE message_id = ANY(:ids)
