-- The re-check of receipts kept before v11 (kept.py).

-- name: waiting
SELECT message_id, site FROM destinations WHERE outcome = 'open' AND reason = :recheck
ORDER BY message_id, site

-- name: acked_at
UPDATE destinations SET receipt_at = :at
WHERE message_id = :message_id AND site = :site AND receipt_digest = :digest

-- name: unconfirmed
UPDATE destinations SET reason = :reason, updated_at = :at
WHERE message_id = :message_id AND site = :site AND outcome = 'open' AND reason = :recheck
