-- PostgreSQL accepts a batch in a few set-based statements (accept.py): one round trip
-- per kind of row, not one per envelope (unnest of parallel arrays, in batch order).

-- name: insert_envelopes
-- A tombstoned message is left out; the ids inserted come back.
INSERT INTO envelopes (message_id, origin, destinations, digest, created, expires,
                       priority, received_from, size, data, hop_ack, receipt, accepted_at,
                       doc_class, chain, escrow)
SELECT t.mid, t.origin, ARRAY(SELECT jsonb_array_elements_text(t.dest::jsonb)), t.digest,
       t.created, t.expires, t.priority, t.rfrom, t.size, t.data, t.ack, NULL, :at,
       t.doc_class, t.chain, t.escrow
FROM unnest(CAST(:mids AS text[]), CAST(:origins AS text[]), CAST(:destinations AS text[]),
            CAST(:digests AS bytea[]), CAST(:created AS timestamptz[]),
            CAST(:expires AS timestamptz[]), CAST(:priorities AS text[]),
            CAST(:received_from AS text[]), CAST(:sizes AS bigint[]), CAST(:data AS bytea[]),
            CAST(:hop_acks AS bytea[]), CAST(:doc_classes AS text[]),
            CAST(:chains AS bytea[]), CAST(:escrows AS bytea[]))
     WITH ORDINALITY AS t(mid, origin, dest, digest, created, expires, priority, rfrom, size,
                          data, ack, doc_class, chain, escrow, n)
WHERE NOT EXISTS (SELECT 1 FROM tombstones x WHERE x.message_id = t.mid)
ORDER BY t.n
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id

-- name: queue_deliveries
WITH q AS (
    SELECT * FROM unnest(CAST(:mids AS text[]), CAST(:peers AS text[]), CAST(:ranks AS int[]),
                         CAST(:created AS timestamptz[]))
    WITH ORDINALITY AS t(mid, peer, rank, created, n)
), queued AS (
    INSERT INTO deliveries (message_id, peer, state, attempts, updated_at, rank, created)
    SELECT mid, peer, 'queued', 0, :at, rank, created FROM q
)
INSERT INTO history (message_id, peer, state, reason, at)
SELECT mid, peer, 'queued', '', :at FROM q ORDER BY n

-- name: add_inbounds
WITH q AS (SELECT * FROM unnest(CAST(:mids AS text[])) WITH ORDINALITY AS t(mid, n)),
added AS (
    INSERT INTO inbound (message_id, state, received_at, updated_at)
    SELECT mid, 'received', :at, :at FROM q
)
INSERT INTO history (message_id, peer, state, reason, at)
SELECT mid, NULL, 'received', '', :at FROM q ORDER BY n
