-- Valise store schema, version 12 (sqlite): the head of each copy an envelope had before
-- it was re-sealed or re-signed here (its framing prefix and head, without the segments,
-- which a re-seal keeps byte for byte). A receipt may name such a copy's digest
-- (envelopes.superseded, v10); the evidence bundle then holds that head, so that anyone
-- can check the copy was the same message signed by its origin (review 11b, F1).
-- Copies replaced before v12 have their digest only. Keep in step with the other backend.

CREATE TABLE superseded_heads (
    message_id    TEXT NOT NULL REFERENCES envelopes (message_id) ON DELETE CASCADE,
    digest        BLOB NOT NULL,          -- the replaced copy's envelope digest (SPEC 4.3)
    head          BLOB NOT NULL,          -- its framing prefix and head XML
    replaced_at   TEXT NOT NULL,
    PRIMARY KEY (message_id, digest)
);
