-- PostgreSQL's change notices (postgres.py: watch LISTENs on the store's channel).

-- name: notify
-- In the accepting transaction: the notice goes out only if it commits.
SELECT pg_notify(:channel, '')
