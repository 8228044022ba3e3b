-- Valise store schema, version 4 (PostgreSQL): RFC 3161 time-stamp tokens kept with
-- their messages (no foreign key: evidence outlives a deleted envelope, which is why a
-- token keeps the digested bytes it stamps, envelope/digested.py). Keep in step with
-- ../sqlite/.

CREATE TABLE timestamps (
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('sent', 'relayed', 'delivered')),
    digest      BYTEA NOT NULL,
    token       BYTEA NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    digested    BYTEA,
    PRIMARY KEY (message_id, kind, digest)
);

-- Every envelope stored from now on awaits its time-stamp (gateway/timestamping.py)
-- until the stamper settles it: the flag is set in the accepting transaction itself (the
-- column default), so a crash between the commit and the stamp loses no token. What
-- was stored before this version is not stamped after the fact.
ALTER TABLE envelopes ADD COLUMN stamp_pending boolean NOT NULL DEFAULT true;
UPDATE envelopes SET stamp_pending = false;
CREATE INDEX envelopes_stamp_pending ON envelopes (accepted_at) WHERE stamp_pending;
