-- name: append
-- valise_audit_append (sql/postgres/v3_audit.sql) hashes in the database under the
-- chain's advisory lock: every process sharing the schema extends one chain.
SELECT seq, at, actor, action, subject, result, detail, prev, hash
FROM valise_audit_append(:at, :actor, :action, :subject, :result, :detail)
