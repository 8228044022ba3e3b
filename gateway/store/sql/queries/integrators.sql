-- The HTTP API's tables: integrators, submissions, the webhook outbox (integrators.py).

-- name: integrator_add
INSERT INTO integrators (name, token_sha256, webhook_url, webhook_secret, created_at, revoked_at)
VALUES (:name, :token_sha256, :webhook_url, :webhook_secret, :now, NULL)
ON CONFLICT (name) DO NOTHING

-- name: integrator_revoke
UPDATE integrators SET revoked_at = :now WHERE name = :name AND revoked_at IS NULL

-- name: integrators
SELECT name, webhook_url, webhook_secret, created_at, revoked_at FROM integrators ORDER BY name

-- name: integrator_for_token
SELECT name, webhook_url, webhook_secret, created_at, revoked_at FROM integrators
WHERE token_sha256 = :token_sha256 AND revoked_at IS NULL

-- name: submission_forget_key
UPDATE submissions SET idempotency_key = NULL
WHERE integrator = :integrator AND idempotency_key = :key AND created_at < :cutoff

-- name: submission_add
INSERT INTO submissions (message_id, integrator, idempotency_key, fingerprint, created_at)
VALUES (:message_id, :integrator, :key, :fingerprint, :created)
ON CONFLICT (integrator, idempotency_key) DO NOTHING

-- name: submission_by_key
SELECT message_id, integrator, idempotency_key, fingerprint, created_at FROM submissions
WHERE integrator = :integrator AND idempotency_key = :key

-- name: submission
SELECT message_id, integrator, idempotency_key, fingerprint, created_at FROM submissions
WHERE message_id = :message_id

-- name: webhook_enqueue
INSERT INTO webhooks (id, integrator, kind, message_id, body, state, attempts,
                      next_attempt, created_at, updated_at)
VALUES (:id, :integrator, :kind, :message_id, :body, 'pending', 0, :now, :now, :now)
ON CONFLICT (id) DO NOTHING

-- name: webhook_take
UPDATE webhooks SET state = 'sending', lease_owner = :owner, lease_until = :until,
    attempts = attempts + 1, updated_at = :now
WHERE id = :id

-- name: webhook_settle
UPDATE webhooks SET state = :state, next_attempt = :due, lease_owner = NULL,
    lease_until = NULL, last_reason = :reason, updated_at = :now
WHERE id = :id AND state = 'sending' AND lease_owner = :owner

-- name: webhooks
SELECT id, integrator, kind, message_id, state, attempts, last_reason FROM webhooks
WHERE (CAST(:message_id AS text) IS NULL OR message_id = :message_id)
ORDER BY created_at, id

-- name: webhook_due
-- Due webhooks in claim order (locked by the claiming transaction).
SELECT w.id, w.integrator, w.kind, w.message_id, w.body, w.attempts,
       i.webhook_url, i.webhook_secret, i.revoked_at
FROM webhooks w JOIN integrators i ON i.name = w.integrator
WHERE (w.state = 'pending' AND w.next_attempt <= :now)
   OR (w.state = 'sending' AND w.lease_until < :now)
ORDER BY w.next_attempt, w.id LIMIT :limit
/*_skip_locked*/
