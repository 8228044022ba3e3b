-- Valise store schema, version 9 (postgres): the audit log's witness (docs/AUDIT.md).
-- At HQ, one row per site: the latest checkpoint of that site's chain HQ witnessed (and
-- signed a statement for), and the last checkpoint it refused as a rollback or fork. At
-- a mission, one row for itself: HQ's latest statement about its chain. Keep in step
-- with the other backend.

CREATE TABLE audit_witness (
    site              text PRIMARY KEY,
    seq               bigint NOT NULL,
    hash              bytea NOT NULL,
    at                timestamptz NOT NULL,
    signer            text NOT NULL,
    signature         bytea NOT NULL,
    witness           text NOT NULL,
    witnessed_at      timestamptz NOT NULL,
    witness_signer    text NOT NULL,
    witness_signature bytea NOT NULL,
    conflict          text NOT NULL DEFAULT '',
    conflict_seq      bigint NOT NULL DEFAULT 0,
    conflict_hash     bytea NOT NULL DEFAULT '\x'::bytea,
    conflict_at       timestamptz
);
