-- HQ's pending enrolments and the TLS certificates it issued (enroll.py).

-- name: enrollment_add
INSERT INTO enrollments (site, endpoint, token_sha256, bootstrap_serial, created_at, expires_at)
VALUES (:site, :endpoint, :token_sha256, :bootstrap_serial, :created, :expires)
ON CONFLICT (site) DO UPDATE SET endpoint = excluded.endpoint,
    token_sha256 = excluded.token_sha256, bootstrap_serial = excluded.bootstrap_serial,
    created_at = excluded.created_at, expires_at = excluded.expires_at

-- name: enrollment_take
-- Consuming a pending enrolment: one conditional statement, atomic on its own (on
-- PostgreSQL, under READ COMMITTED, a second concurrent delete of the row waits for the
-- first to commit, then finds it gone).
DELETE FROM enrollments WHERE site = :site AND token_sha256 = :token_sha256
  AND bootstrap_serial = :bootstrap_serial AND expires_at > :now
RETURNING site, endpoint, token_sha256, bootstrap_serial, created_at, expires_at

-- name: enrollments
SELECT site, endpoint, token_sha256, bootstrap_serial, created_at, expires_at
FROM enrollments ORDER BY site

-- name: certificate_add
INSERT INTO tls_certificates (serial, site, purpose, pin, issued_at, not_after)
VALUES (:serial, :site, :purpose, :pin, :issued, :not_after)
ON CONFLICT (serial) DO NOTHING

-- name: certificate
SELECT serial, site, purpose, pin, issued_at, not_after FROM tls_certificates
WHERE serial = :serial
