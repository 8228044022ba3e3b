-- Valise store schema, version 9 (sqlite): the audit log's witness (docs/AUDIT.md).
-- At HQ, one row per site: the latest checkpoint of that site's chain HQ witnessed (and
-- signed a statement for), and the last checkpoint it refused as a rollback or fork. At
-- a mission, one row for itself: HQ's latest statement about its chain. Times as ISO
-- text. Keep in step with the other backend.

CREATE TABLE audit_witness (
    site              TEXT PRIMARY KEY,
    seq               INTEGER NOT NULL,
    hash              BLOB NOT NULL,
    at                TEXT NOT NULL,
    signer            TEXT NOT NULL,
    signature         BLOB NOT NULL,
    witness           TEXT NOT NULL,
    witnessed_at      TEXT NOT NULL,
    witness_signer    TEXT NOT NULL,
    witness_signature BLOB NOT NULL,
    conflict          TEXT NOT NULL DEFAULT '',
    conflict_seq      INTEGER NOT NULL DEFAULT 0,
    conflict_hash     BLOB NOT NULL DEFAULT x'',
    conflict_at       TEXT
);
