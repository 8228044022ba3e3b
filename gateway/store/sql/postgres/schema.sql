-- Valise store schema, version 1 (PostgreSQL).
-- Created in the first schema of the search_path (the store's schema).
-- Keep the tables and columns in step with ../sqlite/schema.sql.

CREATE TABLE schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL
);

CREATE TABLE envelopes (
    message_id    text PRIMARY KEY,
    origin        text NOT NULL,
    destinations  text[] NOT NULL,
    digest        bytea NOT NULL,
    created       timestamptz NOT NULL,
    expires       timestamptz NOT NULL,
    priority      text NOT NULL
                  CHECK (priority IN ('flash', 'immediate', 'priority', 'routine')),
    received_from text,
    size          bigint NOT NULL,
    data          bytea NOT NULL,
    hop_ack       bytea,
    receipt       bytea,
    accepted_at   timestamptz NOT NULL
);

CREATE INDEX envelopes_expires ON envelopes (expires);

CREATE TABLE deliveries (
    message_id    text NOT NULL REFERENCES envelopes (message_id) ON DELETE CASCADE,
    peer          text NOT NULL,
    state         text NOT NULL
                  CHECK (state IN ('queued', 'sending', 'forwarded', 'delivered',
                                   'deferred', 'held', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    next_attempt  timestamptz,
    lease_owner   text,
    lease_until   timestamptz,
    last_reason   text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (message_id, peer)
);

CREATE INDEX deliveries_peer_state ON deliveries (peer, state);
CREATE INDEX deliveries_state_next ON deliveries (state, next_attempt);

CREATE TABLE inbound (
    message_id    text PRIMARY KEY REFERENCES envelopes (message_id) ON DELETE CASCADE,
    state         text NOT NULL CHECK (state IN ('received', 'available', 'acked')),
    received_at   timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE INDEX inbound_state_received ON inbound (state, received_at);

-- No foreign key: history outlives a deleted envelope.
CREATE TABLE history (
    id            bigserial PRIMARY KEY,
    message_id    text NOT NULL,
    peer          text,
    state         text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    at            timestamptz NOT NULL
);

CREATE INDEX history_message ON history (message_id, id);

-- The HTTP API's integrators: the SHA-256 (hex) of the bearer token, never the token,
-- and an optional webhook URL with its signing secret. Revoked rows are kept.
CREATE TABLE integrators (
    name            text PRIMARY KEY,
    token_sha256    text NOT NULL UNIQUE,
    webhook_url     text,
    webhook_secret  text,
    created_at      timestamptz NOT NULL,
    revoked_at      timestamptz
);

-- Messages submitted over the HTTP API: who sent each (for its webhooks) and the
-- Idempotency-Key it came under (set to NULL once the key has expired).
CREATE TABLE submissions (
    message_id       text PRIMARY KEY,
    integrator       text NOT NULL REFERENCES integrators (name),
    idempotency_key  text,
    fingerprint      text NOT NULL,
    created_at       timestamptz NOT NULL,
    UNIQUE (integrator, idempotency_key)
);

-- The webhook outbox: one row per event and integrator, retried with backoff.
CREATE TABLE webhooks (
    id            text PRIMARY KEY,
    integrator    text NOT NULL REFERENCES integrators (name),
    kind          text NOT NULL CHECK (kind IN ('received', 'delivered', 'failed')),
    message_id    text NOT NULL,
    body          bytea NOT NULL,
    state         text NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    next_attempt  timestamptz NOT NULL,
    lease_owner   text,
    lease_until   timestamptz,
    last_reason   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE INDEX webhooks_state_next ON webhooks (state, next_attempt);
CREATE INDEX webhooks_message ON webhooks (message_id);
