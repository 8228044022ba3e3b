-- name: append
-- The entry as audit.py chained it (the single writer holds the chain's end).
INSERT INTO audit (seq, at, actor, action, subject, result, detail, prev, hash)
VALUES (:seq, :at, :actor, :action, :subject, :result, :detail, :prev, :hash)
