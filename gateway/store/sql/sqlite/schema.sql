-- Valise store schema, version 1 (SQLite).
-- Times are UTC ISO 8601 text with microseconds ("YYYY-MM-DDTHH:MM:SS.ffffff+00:00"),
-- so they compare correctly as strings. Destinations are a JSON array of site ids.
-- Keep the tables and columns in step with ../postgres/schema.sql.

CREATE TABLE schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  TEXT NOT NULL
);

CREATE TABLE envelopes (
    message_id    TEXT PRIMARY KEY,
    origin        TEXT NOT NULL,
    destinations  TEXT NOT NULL,
    digest        BLOB NOT NULL,
    created       TEXT NOT NULL,
    expires       TEXT NOT NULL,
    priority      TEXT NOT NULL
                  CHECK (priority IN ('flash', 'immediate', 'priority', 'routine')),
    received_from TEXT,
    size          INTEGER NOT NULL,
    data          BLOB NOT NULL,
    hop_ack       BLOB,
    receipt       BLOB,
    accepted_at   TEXT NOT NULL
);

CREATE INDEX envelopes_expires ON envelopes (expires);

CREATE TABLE deliveries (
    message_id    TEXT NOT NULL REFERENCES envelopes (message_id) ON DELETE CASCADE,
    peer          TEXT NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('queued', 'sending', 'forwarded', 'delivered',
                                   'deferred', 'held', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  TEXT,
    lease_owner   TEXT,
    lease_until   TEXT,
    last_reason   TEXT NOT NULL DEFAULT '',
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (message_id, peer)
);

CREATE INDEX deliveries_peer_state ON deliveries (peer, state);
CREATE INDEX deliveries_state_next ON deliveries (state, next_attempt);

CREATE TABLE inbound (
    message_id    TEXT PRIMARY KEY REFERENCES envelopes (message_id) ON DELETE CASCADE,
    state         TEXT NOT NULL CHECK (state IN ('received', 'available', 'acked')),
    received_at   TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE INDEX inbound_state_received ON inbound (state, received_at);

-- No foreign key: history outlives a deleted envelope.
CREATE TABLE history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL,
    peer          TEXT,
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    at            TEXT NOT NULL
);

CREATE INDEX history_message ON history (message_id, id);
