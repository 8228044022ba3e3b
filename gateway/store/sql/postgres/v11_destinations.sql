-- Valise store schema, version 11 (PostgreSQL): delivery state and receipts per final
-- destination (issue 11). Keep in step with ../sqlite/.
--
-- A message's deliveries are per next hop; its destinations are the sites it is
-- addressed to. The origin keeps one row per destination, the hub one per destination
-- it forwards to or delivers itself; a pure destination and a receipt envelope have
-- none. A row stores only its terminal facts (outcome delivered, with its receipt, or
-- failed, with its reason); its in-flight state is read from the hop delivery
-- deliveries (message_id, peer = hop) (gateway/store/_common.py DEST_STATE_SQL).

CREATE TABLE destinations (
    message_id      text NOT NULL REFERENCES envelopes (message_id) ON DELETE CASCADE,
    site            text NOT NULL,          -- a final destination of the message
    hop             text,                   -- this site's next hop toward it; NULL: delivered here
    outcome         text NOT NULL DEFAULT 'open'
                    CHECK (outcome IN ('open', 'delivered', 'failed')),
    reason          text NOT NULL DEFAULT '',
    receipt_digest  bytea,                  -- digest of the receipt envelope (NULL: recorded before v11)
    receipt_for     bytea,                  -- the envelope digest the receipt names (origin only)
    receipt_at      timestamptz,            -- when this site recorded it
    receipt         bytea,                  -- origin: the receipt envelope; hub: NULL
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (message_id, site)
);
CREATE INDEX destinations_hop ON destinations (message_id, hop);
CREATE INDEX destinations_outcome ON destinations (outcome, site);

-- Set once, by the transaction that closes the message's last open destination.
ALTER TABLE envelopes ADD COLUMN completed_at timestamptz;
-- From v11, envelopes.receipt holds a receipt envelope's proof (its next hop's signed
-- acknowledgement); document receipts live in destinations.

ALTER TABLE webhooks DROP CONSTRAINT webhooks_kind_check,
    ADD CONSTRAINT webhooks_kind_check
    CHECK (kind IN ('received', 'delivered', 'failed', 'completed'));

-- What each v10 message becomes (pure SQL, in the migration's transaction; "here" is
-- audit_site.site). Known limits:
-- * the hub cannot attribute the receipts it relayed before v11 (the answered message
--   id is in the receipt's head, not in a column): its forwarded rows stay forwarded,
--   with a reason, and its expiry never fails them;
-- * a circular whose receipt cannot be attributed to its signer (the receipt envelope's
--   own row is gone) keeps every destination open, and keeps that receipt in
--   envelopes.receipt, so that the proof is not lost; the same for a destination whose
--   verified receipt envelope is no longer kept here;
-- * a receipt over a copy replaced by a re-seal names a digest in envelopes.superseded (v10).

-- The origin (received_from NULL; not a receipt envelope): a row per destination. Its
-- hop: none for this site itself; the destination itself when there is a delivery to
-- it (HQ as origin); else the message's one next hop (a mission's hub).
INSERT INTO destinations (message_id, site, hop, updated_at)
SELECT e.message_id, s.site,
       CASE WHEN s.site = e.origin OR s.site = (SELECT a.site FROM audit_site a WHERE a.id = 1)
            THEN NULL
            WHEN EXISTS (SELECT 1 FROM deliveries d
                         WHERE d.message_id = e.message_id AND d.peer = s.site)
            THEN s.site
            ELSE (SELECT min(d.peer) FROM deliveries d WHERE d.message_id = e.message_id)
       END,
       e.accepted_at
FROM envelopes e CROSS JOIN LATERAL (SELECT DISTINCT unnest(e.destinations) AS site) s
WHERE e.received_from IS NULL AND e.doc_class <> 'receipt';

-- The hub (relayed, with deliveries of its own): a row per destination it forwarded to,
-- and one for itself when it is a destination too.
INSERT INTO destinations (message_id, site, hop, updated_at)
SELECT e.message_id, s.site,
       CASE WHEN EXISTS (SELECT 1 FROM deliveries d
                         WHERE d.message_id = e.message_id AND d.peer = s.site)
            THEN s.site END,
       e.accepted_at
FROM envelopes e CROSS JOIN LATERAL (SELECT DISTINCT unnest(e.destinations) AS site) s
WHERE e.received_from IS NOT NULL AND e.doc_class <> 'receipt'
  AND s.site <> e.received_from
  AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = e.message_id)
  AND (EXISTS (SELECT 1 FROM deliveries d
               WHERE d.message_id = e.message_id AND d.peer = s.site)
       OR s.site = (SELECT a.site FROM audit_site a WHERE a.id = 1));

-- The hub's relays already forwarded: their receipts went by unrecorded.
UPDATE destinations t SET reason = 'relayed before v11: receipts not tracked here'
FROM envelopes e, deliveries d
WHERE e.message_id = t.message_id AND e.received_from IS NOT NULL
  AND d.message_id = t.message_id AND d.peer = t.hop AND d.state IN ('forwarded', 'delivered');
UPDATE deliveries d SET last_reason = 'relayed before v11: receipts not tracked here'
FROM envelopes e
WHERE e.message_id = d.message_id AND e.received_from IS NOT NULL
  AND d.state = 'forwarded' AND e.doc_class <> 'receipt'
  AND EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = d.message_id AND t.hop = d.peer);

-- A circular's receipt at the origin: the destination whose receipt envelope (kept here
-- as received) has exactly these bytes signed it.
UPDATE destinations t
SET outcome = 'delivered', reason = 'receipt', receipt = e.receipt, receipt_for = e.digest,
    receipt_digest = r.digest,
    receipt_at = coalesce((SELECT max(h.at) FROM history h
                           WHERE h.message_id = t.message_id AND h.state = 'delivered'),
                          e.accepted_at),
    updated_at = coalesce((SELECT max(h.at) FROM history h
                           WHERE h.message_id = t.message_id AND h.state = 'delivered'),
                          e.accepted_at)
FROM envelopes e, envelopes r
WHERE e.message_id = t.message_id AND e.received_from IS NULL AND e.doc_class <> 'receipt'
  AND e.receipt IS NOT NULL
  AND (SELECT count(*) FROM destinations x WHERE x.message_id = t.message_id) > 1
  AND r.doc_class = 'receipt' AND r.origin = t.site
  AND r.size = length(e.receipt) AND r.data = e.receipt;

-- A single destination's receipt (verified against the envelope's digest or, from v10, a
-- digest in envelopes.superseded: receipt_for reads the stored copy's digest, which is
-- the one named unless the message was re-sealed before its receipt came; never after).
-- Its digest is read from the bytes when needed.
UPDATE destinations t
SET outcome = 'delivered', reason = 'receipt', receipt = e.receipt, receipt_for = e.digest,
    receipt_at = coalesce((SELECT max(h.at) FROM history h
                           WHERE h.message_id = t.message_id AND h.state = 'delivered'),
                          e.accepted_at),
    updated_at = coalesce((SELECT max(h.at) FROM history h
                           WHERE h.message_id = t.message_id AND h.state = 'delivered'),
                          e.accepted_at)
FROM envelopes e
WHERE e.message_id = t.message_id AND e.received_from IS NULL AND e.doc_class <> 'receipt'
  AND e.receipt IS NOT NULL
  AND (SELECT count(*) FROM destinations x WHERE x.message_id = t.message_id) = 1;

-- The other destinations' receipts, verified before v11 and kept here as received
-- (acknowledged 'receipt'): v10 checked the signed receipt inside, never its plain head's
-- in-reply-to, and the store cannot open it (review 11c). A step in Python
-- (gateway/store/migrate_v11.py) marks each open row such a receipt's plain head
-- answers: it stays open, reason 'receipt kept before v11: re-checking', until the first
-- gateway start re-checks the receipt with the site's key (gateway/kept_receipts.py).
-- Nothing below fails or relabels a marked row (its hop, if the v9 bug marked it
-- delivered, goes back to forwarded as for any open row).
-- @step v11_kept_receipts

-- The other destinations of a receipted circular without a receipt kept here.
UPDATE destinations t SET reason = 'no receipt of its own recorded before v11'
FROM envelopes e
WHERE e.message_id = t.message_id AND e.received_from IS NULL AND e.receipt IS NOT NULL
  AND t.outcome = 'open'
  AND t.reason <> 'receipt kept before v11: re-checking';

-- This site as a destination: delivered once its inbound item was opened here; failed
-- when the item was acknowledged without being opened (undeliverable).
UPDATE destinations t
SET outcome = 'delivered', reason = 'delivered here before v11', receipt_at = h.at,
    updated_at = h.at
FROM (SELECT message_id, max(at) AS at FROM history
      WHERE peer IS NULL AND state = 'available' GROUP BY message_id) h
WHERE t.hop IS NULL AND t.outcome = 'open' AND h.message_id = t.message_id;
UPDATE destinations t
SET outcome = 'failed',
    reason = coalesce((SELECT h.reason FROM history h
                       WHERE h.message_id = t.message_id AND h.peer IS NULL
                         AND h.state = 'acked' ORDER BY h.id DESC LIMIT 1), ''),
    updated_at = i.updated_at
FROM inbound i
WHERE t.hop IS NULL AND t.outcome = 'open' AND i.message_id = t.message_id
  AND i.state = 'acked';

-- A failed hop: the destinations through it failed with it.
UPDATE destinations t
SET outcome = 'failed', reason = d.last_reason, updated_at = d.updated_at
FROM deliveries d
WHERE d.message_id = t.message_id AND d.peer = t.hop AND d.state = 'failed'
  AND t.outcome = 'open'
  AND t.reason <> 'receipt kept before v11: re-checking';

-- The v9 bug: a hop marked delivered by one destination's receipt while others through
-- it have none goes back to forwarded (with a history row, so the audit log has it).
WITH c AS (
    SELECT message_id, hop, count(*) FILTER (WHERE outcome = 'delivered') AS k, count(*) AS n
    FROM destinations WHERE hop IS NOT NULL GROUP BY message_id, hop
), moved AS (
    UPDATE deliveries d
    SET state = 'forwarded',
        last_reason = 'v11: ' || c.k || ' of ' || c.n || ' destinations receipted',
        updated_at = now()
    FROM c
    WHERE d.message_id = c.message_id AND d.peer = c.hop AND d.state = 'delivered'
      AND c.k < c.n
    RETURNING d.message_id, d.peer, d.last_reason
)
INSERT INTO history (message_id, peer, state, reason, at)
SELECT message_id, peer, 'forwarded', last_reason, now() FROM moved ORDER BY message_id, peer;

-- A message none of whose destinations is open is complete.
UPDATE envelopes e SET completed_at = c.at
FROM (SELECT message_id, max(coalesce(receipt_at, updated_at)) AS at FROM destinations
      GROUP BY message_id HAVING bool_and(outcome <> 'open')) c
WHERE e.message_id = c.message_id;

-- Document receipts now live in their destination rows.
UPDATE envelopes e SET receipt = NULL
WHERE e.receipt IS NOT NULL AND e.doc_class <> 'receipt'
  AND EXISTS (SELECT 1 FROM destinations t
              WHERE t.message_id = e.message_id AND t.receipt = e.receipt);
