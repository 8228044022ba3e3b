-- Valise store schema, version 4 (SQLite): RFC 3161 time-stamp tokens kept with their
-- messages (no foreign key: evidence outlives a deleted envelope). Keep in step with
-- ../postgres/.

CREATE TABLE timestamps (
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('sent', 'relayed', 'delivered')),
    digest      BLOB NOT NULL,
    token       BLOB NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (message_id, kind, digest)
);
