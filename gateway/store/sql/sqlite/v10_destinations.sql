-- Valise store schema, version 10 (sqlite): delivery state and receipts per final
-- destination (issue 11; docs/AUDIT.md). Keep in step with ../postgres/.
-- merge: issue 10 takes version 10 on main; this file becomes v11_destinations.sql.
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
    receipt_digest  BLOB,                   -- SPEC 4.3 digest of the receipt envelope (NULL: recorded before v10)
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
-- From v10, envelopes.receipt holds only a receipt envelope's proof (its next hop's
-- signed acknowledgement); document receipts live in destinations.

-- Webhook kind 'completed' (every destination delivered or failed): SQLite cannot alter a
-- CHECK, so the table is rebuilt (nothing references it) and its indexes re-created.
CREATE TABLE webhooks_v10 (
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
INSERT INTO webhooks_v10 (id, integrator, kind, message_id, body, state, attempts,
    next_attempt, lease_owner, lease_until, last_reason, created_at, updated_at)
SELECT id, integrator, kind, message_id, body, state, attempts, next_attempt, lease_owner,
    lease_until, last_reason, created_at, updated_at FROM webhooks;
DROP TABLE webhooks;
ALTER TABLE webhooks_v10 RENAME TO webhooks;
CREATE INDEX webhooks_state_next ON webhooks (state, next_attempt);
CREATE INDEX webhooks_message ON webhooks (message_id);

-- Existing messages (design §2.4): the data mapping follows (WP-B owns it).
