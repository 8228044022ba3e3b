-- Accepting envelopes (accept.py). The per-item statements are SQLite's strategy (one
-- item at a time under its single writer); PostgreSQL takes whole batches with
-- accept.postgres.sql. The reads and the take-back run on both.

-- name: tombstoned
SELECT 1 FROM tombstones WHERE message_id = :message_id

-- name: insert_envelope
INSERT INTO envelopes (message_id, origin, destinations, digest, created, expires,
                       priority, received_from, size, data, hop_ack, receipt, accepted_at,
                       doc_class, chain, escrow)
VALUES (:message_id, :origin, :destinations, :digest, :created, :expires, :priority,
        :received_from, :size, :data, :hop_ack, NULL, :at, :doc_class, :chain, :escrow)
ON CONFLICT (message_id) DO NOTHING

-- name: hop_ack
SELECT hop_ack FROM envelopes WHERE message_id = :message_id

-- name: queue_delivery
INSERT INTO deliveries (message_id, peer, state, attempts, updated_at, rank, created)
VALUES (:message_id, :peer, 'queued', 0, :at, :rank, :created)

-- name: add_inbound
INSERT INTO inbound (message_id, state, received_at, updated_at)
VALUES (:message_id, 'received', :at, :at)

-- name: hop_acks
SELECT message_id, hop_ack FROM envelopes WHERE message_id = ANY(:ids)

-- name: tombstones
SELECT message_id FROM tombstones WHERE message_id = ANY(:ids)

-- name: take_back
-- Receipt envelopes this transaction inserted and refuses after all (a second receipt).
DELETE FROM envelopes WHERE message_id = ANY(:ids)

-- name: first_receipt
SELECT receipt_digest FROM destinations WHERE message_id = :message_id AND site = :site
