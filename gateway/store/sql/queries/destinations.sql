-- Delivery state and receipts per final destination (destinations.py, issue 11).

-- name: has_rows
SELECT 1 FROM destinations WHERE message_id = :message_id LIMIT 1

-- name: insert_route
INSERT INTO destinations (message_id, site, hop, updated_at)
VALUES (:message_id, :site, :hop, :at)

-- name: maybe_complete
UPDATE envelopes SET completed_at = :at
WHERE message_id = :message_id AND completed_at IS NULL
  AND EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = :message_id)
  AND NOT EXISTS (SELECT 1 FROM destinations t
                  WHERE t.message_id = :message_id AND t.outcome = 'open')

-- name: complete
UPDATE envelopes SET completed_at = :at WHERE message_id = :message_id AND completed_at IS NULL

-- name: uncomplete
UPDATE envelopes SET completed_at = NULL WHERE message_id = :message_id

-- name: store_ack
UPDATE envelopes SET receipt = :proof WHERE message_id = :message_id AND receipt IS NULL

-- name: take_receipt
UPDATE destinations SET outcome = 'delivered', reason = :reason, receipt_digest = :digest,
    receipt_for = :receipt_for, receipt_at = :at, receipt = :receipt, updated_at = :at
WHERE message_id = :message_id AND site = :site AND receipt_at IS NULL

-- name: close_open
-- A row waiting for its kept receipt's re-check (:recheck) waits for it.
UPDATE destinations SET outcome = 'failed', reason = :reason, updated_at = :at
WHERE message_id = :message_id AND outcome = 'open' AND reason <> :recheck
  AND (:all_hops OR hop = ANY(:hops))
  AND (:all_sites OR site = ANY(:sites))
RETURNING site

-- name: reopen_failed
UPDATE destinations SET outcome = 'open', reason = '', updated_at = :at
WHERE message_id = :message_id AND outcome = 'failed' AND hop = ANY(:hops)
RETURNING site

-- name: failed_peers
SELECT peer FROM deliveries WHERE message_id = :message_id AND state = 'failed'

-- name: receipted
SELECT message_id, site, receipt_digest FROM destinations
WHERE message_id = ANY(:ids) AND receipt_at IS NOT NULL ORDER BY site

-- name: destination_receipt
SELECT receipt FROM destinations WHERE message_id = :message_id AND site = :site

-- name: _state
-- A destination's shown state (records.DestState), derived from its row t and its hop
-- row d (LEFT JOINed on message_id and peer = t.hop); memory_destinations.py spells it
-- in Python: keep them in step.
CASE WHEN t.outcome = 'delivered' THEN 'delivered'
     WHEN t.outcome = 'failed' THEN 'failed'
     WHEN t.hop IS NULL THEN 'queued'
     WHEN d.state IS NULL OR d.state IN ('queued', 'sending') THEN 'queued'
     WHEN d.state = 'delivered' THEN 'forwarded'
     ELSE d.state END

-- name: destinations
SELECT t.message_id, t.site, t.hop,
       /*_state*/ AS state,
       CASE WHEN t.outcome <> 'open' OR t.hop IS NULL OR d.state IS NULL
            THEN t.reason ELSE d.last_reason END AS reason,
       coalesce(d.attempts, 0) AS attempts,
       CASE WHEN t.outcome = 'open' THEN d.next_attempt END AS next_attempt,
       CASE WHEN t.outcome = 'open' AND t.hop IS NOT NULL AND d.updated_at IS NOT NULL
            AND d.updated_at > t.updated_at THEN d.updated_at ELSE t.updated_at END AS updated,
       t.receipt_at, t.receipt_digest, t.receipt_for,
       coalesce(length(t.receipt), 0) AS receipt_size
FROM destinations t
LEFT JOIN deliveries d ON d.message_id = t.message_id AND d.peer = t.hop
WHERE t.message_id = :message_id
ORDER BY t.site

-- name: depths
SELECT CASE WHEN t.outcome = 'open' THEN t.site ELSE '' END AS site,
       /*_state*/ AS state,
       count(*) AS n
FROM destinations t
LEFT JOIN deliveries d ON d.message_id = t.message_id AND d.peer = t.hop
GROUP BY 1, 2

-- name: rows_of
-- The destination rows of these messages: record_receipt_rows reads a batch's in one go.
SELECT message_id, site, outcome, hop, receipt_at FROM destinations
WHERE message_id = ANY(:ids)

-- name: hops_left
-- (message, hop) of these messages with a destination through the hop still without its
-- receipt (hop_left for a batch).
SELECT DISTINCT message_id, hop FROM destinations
WHERE message_id = ANY(:ids) AND hop IS NOT NULL AND outcome <> 'delivered'
