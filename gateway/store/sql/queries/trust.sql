-- Time-stamp tokens, directory fetches, escrowed keys, re-sealed copies (trust.py).

-- name: timestamp_add
INSERT INTO timestamps (message_id, kind, digest, token, at, digested)
VALUES (:message_id, :kind, :digest, :token, :at, :digested)
ON CONFLICT DO NOTHING

-- name: stamp_done
UPDATE envelopes SET stamp_pending = :no WHERE message_id = :message_id AND stamp_pending = :yes

-- name: stamp_pending
-- By the partial index envelopes_stamp_pending: its predicate is written out (/*_pending*/),
-- not bound (a bound :yes cannot use a partial index; the query would scan every envelope).
-- Each row's head comes with it, cut where its prefix says (_head_bytes): one query,
-- not one more per envelope.
SELECT message_id, origin, received_from, doc_class, digest, substr(data, 1, /*_head_bytes*/)
FROM envelopes WHERE /*_pending*/ ORDER BY accepted_at, message_id LIMIT :limit

-- name: received_heads
-- The heads of the inbound items still to open here, by message id after :after (a page
-- of a scan: the key watcher and valise keys look for envelopes sealed to a key going).
SELECT i.message_id, substr(data, 1, /*_head_bytes*/)
FROM inbound i JOIN envelopes e ON e.message_id = i.message_id
WHERE i.state = 'received' AND i.message_id > :after
ORDER BY i.message_id LIMIT :limit

-- name: head
-- The first :n bytes of the stored copy (its prefix and head, envelope/framing.py).
SELECT substr(data, 1, :n) FROM envelopes WHERE message_id = :message_id

-- name: timestamps
SELECT message_id, kind, digest, token, at, digested FROM timestamps
WHERE message_id = :message_id ORDER BY at, kind

-- name: directory_fetched
INSERT INTO directory_fetches (site, serial, at) VALUES (:site, :serial, :at)
ON CONFLICT (site) DO UPDATE SET
    serial = CASE WHEN excluded.serial > directory_fetches.serial
                  THEN excluded.serial ELSE directory_fetches.serial END,
    at = excluded.at

-- name: directory_fetches
SELECT site, serial, at FROM directory_fetches ORDER BY site

-- name: escrow
SELECT escrow FROM envelopes WHERE message_id = :message_id

-- name: open_escrows
SELECT message_id, escrow FROM envelopes WHERE escrow IS NOT NULL
  AND (receipt IS NULL OR (doc_class = 'receipt' AND created >= :since))
ORDER BY message_id

-- name: replace_escrow
UPDATE envelopes SET escrow = :new WHERE message_id = :message_id AND escrow = :old

-- name: held_for
SELECT 1 FROM deliveries WHERE message_id = :message_id AND state = 'held'
  AND substr(last_reason, 1, length(:held_for)) = :held_for

-- name: replaceable
-- Only while a destination still lacks its receipt (open or failed); without
-- destination rows: while the message has no receipt, or (:again) it is a receipt
-- sealed here whose stored proof, the hop ack, goes with its copy.
SELECT 1 FROM envelopes e
WHERE e.message_id = :message_id AND e.digest = :expected AND e.digest <> :digest
  AND (EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = :message_id
               AND t.outcome <> 'delivered')
       OR ((e.receipt IS NULL OR (:again AND e.doc_class = 'receipt'))
           AND NOT EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = :message_id)))
/*_for_update*/

-- name: keep_head
INSERT INTO superseded_heads (message_id, digest, head, replaced_at)
SELECT message_id, digest, substr(data, 1, :n), :at FROM envelopes
WHERE message_id = :message_id
ON CONFLICT DO NOTHING

-- name: replace_sealed
UPDATE envelopes SET data = :data, digest = :digest, chain = :chain, hop_ack = :hop_ack,
    size = :size, superseded = superseded || /*_hex_digest*/,
    receipt = CASE WHEN :again AND doc_class = 'receipt' THEN NULL ELSE receipt END
WHERE message_id = :message_id

-- name: renew_hop_ack
UPDATE envelopes SET hop_ack = :new
WHERE message_id = :message_id AND digest = :digest AND hop_ack = :old
