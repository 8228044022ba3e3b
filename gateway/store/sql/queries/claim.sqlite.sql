-- Claiming due work (claim.py), SQLite: under its single writer the due rows are read
-- here, in claim order, and then taken (claim.sql: take).

-- name: claim
-- Due work of one peer, in claim order: each branch reads the deliveries_claim index
-- (peer, state, rank, created, message_id) in order and stops at the limit (the plan is
-- checked by tests/integration/test_store_delivery_backends.py).
SELECT u.message_id, u.state, u.lease_owner, u.attempts, e.data, e.expires,
       e.origin, e.digest, e.doc_class, e.chain
FROM (
    SELECT * FROM (SELECT message_id, state, lease_owner, attempts, rank, created
        FROM deliveries WHERE peer = :peer AND state = 'queued'
        ORDER BY rank, created, message_id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT message_id, state, lease_owner, attempts, rank, created
        FROM deliveries WHERE peer = :peer AND state = 'deferred' AND next_attempt <= :now
        ORDER BY rank, created, message_id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT message_id, state, lease_owner, attempts, rank, created
        FROM deliveries WHERE peer = :peer AND state = 'sending' AND lease_until < :now
        ORDER BY rank, created, message_id LIMIT :limit)
) u JOIN envelopes e ON e.message_id = u.message_id
ORDER BY u.rank, u.created, u.message_id LIMIT :limit
