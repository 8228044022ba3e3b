-- Valise store schema, version 8 (SQLite): at HQ, the pending enrolments (one per site,
-- its one-time token as a SHA-256, the serial of its bootstrap certificate) and every
-- TLS certificate HQ issued under the site CA (bootstrap or site), by serial. A join
-- consumes its enrolment with one conditional DELETE … RETURNING (gateway/enroll.py);
-- the channel refuses a bootstrap certificate outside a pending join and admits an
-- unpinned certificate to /v1/keys only for the recovery case (gateway/channel.py).
-- Keep in step with ../postgres/.

CREATE TABLE enrollments (
    site                TEXT PRIMARY KEY,
    endpoint            TEXT NOT NULL,
    token_sha256        TEXT NOT NULL,
    bootstrap_serial    TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL
);

CREATE TABLE tls_certificates (
    serial      TEXT PRIMARY KEY,
    site        TEXT NOT NULL,
    purpose     TEXT NOT NULL CHECK (purpose IN ('bootstrap', 'site')),
    pin         TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    not_after   TEXT NOT NULL
);
