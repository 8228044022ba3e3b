-- Valise store schema, version 4 (PostgreSQL): RFC 3161 time-stamp tokens kept with
-- their messages (no foreign key: evidence outlives a deleted envelope). Keep in step
-- with ../sqlite/.

CREATE TABLE timestamps (
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('sent', 'relayed', 'delivered')),
    digest      BYTEA NOT NULL,
    token       BYTEA NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (message_id, kind, digest)
);
