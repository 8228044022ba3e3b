-- Valise store schema, version 11 (sqlite): delivery state and receipts per final
-- destination (issue 11; docs/AUDIT.md). Keep in step with ../postgres/.
--
-- One row per final destination of a message, at the sites responsible for it: the
-- origin (every destination) and a hub that relays (every destination it forwards to or
-- delivers itself). A pure destination and a receipt envelope have none. The row holds
-- only the terminal fact (outcome: open, delivered with its receipt, failed with its
-- reason); the in-flight state shown is derived from the hop row deliveries(message_id,
-- peer = hop) when read (gateway/store/_common.py DEST_STATE_SQL).

CREATE TABLE destinations (
    message_id      TEXT NOT NULL REFERENCES envelopes (message_id) ON DELETE CASCADE,
    site            TEXT NOT NULL,          -- a final destination of the message
    hop             TEXT,                   -- next hop toward it (deliveries.peer); NULL: delivered here
    outcome         TEXT NOT NULL DEFAULT 'open'
                    CHECK (outcome IN ('open', 'delivered', 'failed')),
    reason          TEXT NOT NULL DEFAULT '',
    receipt_digest  BLOB,                   -- SPEC 4.3 digest of the receipt envelope (NULL: recorded before v11)
    receipt_for     BLOB,                   -- the envelope digest the receipt names (origin: verified; hub: NULL, sealed)
    receipt_at      TEXT,                   -- when this site recorded it
    receipt         BLOB,                   -- origin: the receipt envelope; hub: NULL
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (message_id, site)
);
CREATE INDEX destinations_hop ON destinations (message_id, hop);
CREATE INDEX destinations_outcome ON destinations (outcome, site);

-- Set once, by the transaction that closes the message's last open destination.
ALTER TABLE envelopes ADD COLUMN completed_at TEXT;
-- From v11, envelopes.receipt holds only a receipt envelope's proof (its next hop's
-- signed acknowledgement); document receipts live in destinations.

-- Webhook kind 'completed' (every destination delivered or failed): SQLite cannot alter a
-- CHECK, so the table is rebuilt (nothing references it) and its indexes re-created.
CREATE TABLE webhooks_v11 (
    id            TEXT PRIMARY KEY,
    integrator    TEXT NOT NULL REFERENCES integrators (name),
    kind          TEXT NOT NULL CHECK (kind IN ('received', 'delivered', 'failed', 'completed')),
    message_id    TEXT NOT NULL,
    body          BLOB NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  TEXT NOT NULL,
    lease_owner   TEXT,
    lease_until   TEXT,
    last_reason   TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
INSERT INTO webhooks_v11 (id, integrator, kind, message_id, body, state, attempts,
    next_attempt, lease_owner, lease_until, last_reason, created_at, updated_at)
SELECT id, integrator, kind, message_id, body, state, attempts, next_attempt, lease_owner,
    lease_until, last_reason, created_at, updated_at FROM webhooks;
DROP TABLE webhooks;
ALTER TABLE webhooks_v11 RENAME TO webhooks;
CREATE INDEX webhooks_state_next ON webhooks (state, next_attempt);
CREATE INDEX webhooks_message ON webhooks (message_id);

-- What each v10 message becomes (pure SQL, in the migration's transaction; "here" is
-- audit_site.site). The same statements as ../postgres/v11_destinations.sql, spelt for
-- SQLite (json_each, no DML in a WITH: history is written before the update it logs).
-- Known limits:
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
SELECT DISTINCT e.message_id, j.value,
       CASE WHEN j.value = e.origin OR j.value = (SELECT a.site FROM audit_site a WHERE a.id = 1)
            THEN NULL
            WHEN EXISTS (SELECT 1 FROM deliveries d
                         WHERE d.message_id = e.message_id AND d.peer = j.value)
            THEN j.value
            ELSE (SELECT min(d.peer) FROM deliveries d WHERE d.message_id = e.message_id)
       END,
       e.accepted_at
FROM envelopes e, json_each(e.destinations) j
WHERE e.received_from IS NULL AND e.doc_class <> 'receipt';

-- The hub (relayed, with deliveries of its own): a row per destination it forwarded to,
-- and one for itself when it is a destination too.
INSERT INTO destinations (message_id, site, hop, updated_at)
SELECT DISTINCT e.message_id, j.value,
       CASE WHEN EXISTS (SELECT 1 FROM deliveries d
                         WHERE d.message_id = e.message_id AND d.peer = j.value)
            THEN j.value END,
       e.accepted_at
FROM envelopes e, json_each(e.destinations) j
WHERE e.received_from IS NOT NULL AND e.doc_class <> 'receipt'
  AND j.value <> e.received_from
  AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = e.message_id)
  AND (EXISTS (SELECT 1 FROM deliveries d
               WHERE d.message_id = e.message_id AND d.peer = j.value)
       OR j.value = (SELECT a.site FROM audit_site a WHERE a.id = 1));

-- The hub's relays already forwarded: their receipts went by unrecorded.
UPDATE destinations AS t SET reason = 'relayed before v11: receipts not tracked here'
FROM envelopes e, deliveries d
WHERE e.message_id = t.message_id AND e.received_from IS NOT NULL
  AND d.message_id = t.message_id AND d.peer = t.hop AND d.state IN ('forwarded', 'delivered');
UPDATE deliveries AS d SET last_reason = 'relayed before v11: receipts not tracked here'
FROM envelopes e
WHERE e.message_id = d.message_id AND e.received_from IS NOT NULL
  AND d.state = 'forwarded' AND e.doc_class <> 'receipt'
  AND EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = d.message_id AND t.hop = d.peer);

-- A circular's receipt at the origin: the destination whose receipt envelope (kept here
-- as received) has exactly these bytes signed it.
UPDATE destinations AS t
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
UPDATE destinations AS t
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
UPDATE destinations AS t SET reason = 'no receipt of its own recorded before v11'
FROM envelopes e
WHERE e.message_id = t.message_id AND e.received_from IS NULL AND e.receipt IS NOT NULL
  AND t.outcome = 'open'
  AND t.reason <> 'receipt kept before v11: re-checking';

-- This site as a destination: delivered once its inbound item was opened here; failed
-- when the item was acknowledged without being opened (undeliverable).
UPDATE destinations AS t
SET outcome = 'delivered', reason = 'delivered here before v11', receipt_at = h.at,
    updated_at = h.at
FROM (SELECT message_id, max(at) AS at FROM history
      WHERE peer IS NULL AND state = 'available' GROUP BY message_id) h
WHERE t.hop IS NULL AND t.outcome = 'open' AND h.message_id = t.message_id;
UPDATE destinations AS t
SET outcome = 'failed',
    reason = coalesce((SELECT h.reason FROM history h
                       WHERE h.message_id = t.message_id AND h.peer IS NULL
                         AND h.state = 'acked' ORDER BY h.id DESC LIMIT 1), ''),
    updated_at = i.updated_at
FROM inbound i
WHERE t.hop IS NULL AND t.outcome = 'open' AND i.message_id = t.message_id
  AND i.state = 'acked';

-- A failed hop: the destinations through it failed with it.
UPDATE destinations AS t
SET outcome = 'failed', reason = d.last_reason, updated_at = d.updated_at
FROM deliveries d
WHERE d.message_id = t.message_id AND d.peer = t.hop AND d.state = 'failed'
  AND t.outcome = 'open'
  AND t.reason <> 'receipt kept before v11: re-checking';

-- The v9 bug: a hop marked delivered by one destination's receipt while others through
-- it have none goes back to forwarded (with a history row, so the audit log has it).
INSERT INTO history (message_id, peer, state, reason, at)
SELECT d.message_id, d.peer, 'forwarded',
       'v11: ' || c.k || ' of ' || c.n || ' destinations receipted',
       strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000+00:00'
FROM deliveries d
JOIN (SELECT message_id, hop, sum(outcome = 'delivered') AS k, count(*) AS n
      FROM destinations WHERE hop IS NOT NULL GROUP BY message_id, hop) c
  ON c.message_id = d.message_id AND c.hop = d.peer
WHERE d.state = 'delivered' AND c.k < c.n
ORDER BY d.message_id, d.peer;
UPDATE deliveries AS d
SET state = 'forwarded',
    last_reason = 'v11: ' || c.k || ' of ' || c.n || ' destinations receipted',
    updated_at = strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000+00:00'
FROM (SELECT message_id, hop, sum(outcome = 'delivered') AS k, count(*) AS n
      FROM destinations WHERE hop IS NOT NULL GROUP BY message_id, hop) c
WHERE d.message_id = c.message_id AND d.peer = c.hop AND d.state = 'delivered'
  AND c.k < c.n;

-- A message none of whose destinations is open is complete.
UPDATE envelopes AS e SET completed_at = c.at
FROM (SELECT message_id, max(coalesce(receipt_at, updated_at)) AS at FROM destinations
      GROUP BY message_id HAVING max(outcome = 'open') = 0) c
WHERE e.message_id = c.message_id;

-- Document receipts now live in their destination rows.
UPDATE envelopes SET receipt = NULL
WHERE receipt IS NOT NULL AND doc_class <> 'receipt'
  AND EXISTS (SELECT 1 FROM destinations t
              WHERE t.message_id = envelopes.message_id AND t.receipt = envelopes.receipt);
