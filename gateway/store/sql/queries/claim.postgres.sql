-- Claiming due work (claim.py), PostgreSQL: one statement reads, takes and logs the
-- due rows, skipping those another claimer holds (FOR UPDATE SKIP LOCKED), so that
-- concurrent claimers never get the same delivery.

-- name: claim
-- Due work of one peer, in claim order: each branch reads the deliveries_claim index
-- (peer, state, rank, created, message_id) in order and stops at the limit, skipping
-- rows another claimer holds; the union keeps the first ``limit`` of them. The same
-- columns as SQLite's, attempts as before this claim.
WITH q AS (
    SELECT message_id, peer, state AS old_state, lease_owner AS old_owner, rank, created
    FROM deliveries WHERE peer = :peer AND state = 'queued'
    ORDER BY rank, created, message_id LIMIT :limit FOR UPDATE SKIP LOCKED
), f AS (
    SELECT message_id, peer, state AS old_state, lease_owner AS old_owner, rank, created
    FROM deliveries WHERE peer = :peer AND state = 'deferred' AND next_attempt <= :now
    ORDER BY rank, created, message_id LIMIT :limit FOR UPDATE SKIP LOCKED
), s AS (
    SELECT message_id, peer, state AS old_state, lease_owner AS old_owner, rank, created
    FROM deliveries WHERE peer = :peer AND state = 'sending' AND lease_until < :now
    ORDER BY rank, created, message_id LIMIT :limit FOR UPDATE SKIP LOCKED
), due AS (
    SELECT * FROM q UNION ALL SELECT * FROM f UNION ALL SELECT * FROM s
    ORDER BY rank, created, message_id LIMIT :limit
), claimed AS (
    UPDATE deliveries d
    SET state = 'sending', lease_owner = :owner, lease_until = :until,
        attempts = d.attempts + 1, updated_at = :now
    FROM due
    WHERE d.message_id = due.message_id AND d.peer = due.peer
    RETURNING d.message_id, d.peer, d.attempts, d.rank, d.created, due.old_state, due.old_owner
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT message_id, peer, 'sending',
           CASE WHEN old_state = 'sending'
                THEN 'lease of ' || coalesce(old_owner, '?') || ' expired' ELSE '' END,
           :now
    FROM claimed ORDER BY rank, created, message_id
)
SELECT c.message_id, c.old_state, c.old_owner, c.attempts - 1 AS attempts, e.data,
       e.expires, e.origin, e.digest, e.doc_class, e.chain
FROM claimed c JOIN envelopes e ON e.message_id = c.message_id
ORDER BY c.rank, c.created, c.message_id
