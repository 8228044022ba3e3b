-- Valise store schema, version 7 (postgres): a tombstone for each message id the
-- operator deleted (valise queue delete), kept until the envelope's expiry (plus a grace
-- period) so that a captured copy replayed to /v1/hop is refused, not stored and
-- delivered again. Purged by the expiry housekeeping. Keep in step with ../sqlite/.

CREATE TABLE tombstones (
    message_id  TEXT PRIMARY KEY,
    expires     TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX tombstones_expires ON tombstones (expires);
