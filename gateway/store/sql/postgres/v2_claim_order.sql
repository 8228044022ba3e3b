-- Valise store schema, version 2 (PostgreSQL): each delivery carries its claim order,
-- the priority rank (flash 0, immediate 1, priority 2, routine 3) and the envelope's
-- created time, so that a claim reads the (peer, state, rank, created) index in order
-- instead of sorting the peer's whole queue. Keep in step with ../sqlite/.

ALTER TABLE deliveries ADD COLUMN rank integer, ADD COLUMN created timestamptz;

UPDATE deliveries d SET
    rank = CASE e.priority WHEN 'flash' THEN 0 WHEN 'immediate' THEN 1
                           WHEN 'priority' THEN 2 ELSE 3 END,
    created = e.created
FROM envelopes e WHERE e.message_id = d.message_id;

ALTER TABLE deliveries ALTER COLUMN rank SET NOT NULL, ALTER COLUMN created SET NOT NULL;

-- (peer, state) is a prefix of the new index.
DROP INDEX deliveries_peer_state;
CREATE INDEX deliveries_claim ON deliveries (peer, state, rank, created, message_id);

-- What a courier checks a hop acknowledgement against without reading the head again:
-- the document class, and the last signature in the head (NULL: read the head).
ALTER TABLE envelopes ADD COLUMN doc_class text NOT NULL DEFAULT 'document',
                      ADD COLUMN chain bytea;
