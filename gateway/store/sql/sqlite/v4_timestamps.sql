-- Valise store schema, version 4 (SQLite): RFC 3161 time-stamp tokens kept with their
-- messages (no foreign key: evidence outlives a deleted envelope, which is why a token
-- keeps the digested bytes it stamps, envelope/digested.py). Keep in step with
-- ../postgres/.

CREATE TABLE timestamps (
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('sent', 'relayed', 'delivered')),
    digest      BLOB NOT NULL,
    token       BLOB NOT NULL,
    at          TEXT NOT NULL,
    digested    BLOB,
    PRIMARY KEY (message_id, kind, digest)
);

-- Every envelope stored from now on awaits its time-stamp (gateway/timestamping.py)
-- until the stamper settles it: the flag is set in the accepting transaction itself (the
-- column default), so a crash between the commit and the stamp loses no token. What
-- was stored before this version is not stamped after the fact.
ALTER TABLE envelopes ADD COLUMN stamp_pending INTEGER NOT NULL DEFAULT 1;
UPDATE envelopes SET stamp_pending = 0;
CREATE INDEX envelopes_stamp_pending ON envelopes (accepted_at) WHERE stamp_pending = 1;
