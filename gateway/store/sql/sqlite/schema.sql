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

-- The HTTP API's integrators: the SHA-256 (hex) of the bearer token, never the token,
-- and an optional webhook URL with its signing secret. Revoked rows are kept.
CREATE TABLE integrators (
    name            TEXT PRIMARY KEY,
    token_sha256    TEXT NOT NULL UNIQUE,
    webhook_url     TEXT,
    webhook_secret  TEXT,
    created_at      TEXT NOT NULL,
    revoked_at      TEXT
);

-- Messages submitted over the HTTP API: who sent each (for its webhooks) and the
-- Idempotency-Key it came under (set to NULL once the key has expired).
CREATE TABLE submissions (
    message_id       TEXT PRIMARY KEY,
    integrator       TEXT NOT NULL REFERENCES integrators (name),
    idempotency_key  TEXT,
    fingerprint      TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    UNIQUE (integrator, idempotency_key)
);

-- The webhook outbox: one row per event and integrator, retried with backoff.
CREATE TABLE webhooks (
    id            TEXT PRIMARY KEY,
    integrator    TEXT NOT NULL REFERENCES integrators (name),
    kind          TEXT NOT NULL CHECK (kind IN ('received', 'delivered', 'failed')),
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

CREATE INDEX webhooks_state_next ON webhooks (state, next_attempt);
CREATE INDEX webhooks_message ON webhooks (message_id);
