-- The audit log, its checkpoints and HQ's witness records (audit.py).

-- name: site
SELECT site FROM audit_site WHERE id = 1

-- name: identify
UPDATE audit_site SET site = :site WHERE id = 1 AND site <> :site

-- name: last_link
SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1

-- name: head
SELECT seq, at, actor, action, subject, result, detail, prev, hash
FROM audit ORDER BY seq DESC LIMIT 1

-- name: entries
SELECT seq, at, actor, action, subject, result, detail, prev, hash
FROM audit WHERE seq > :after ORDER BY seq LIMIT :limit

-- name: checkpoint_add
INSERT INTO audit_checkpoints (seq, hash, at, signer, signature, token)
VALUES (:seq, :hash, :at, :signer, :signature, :token) ON CONFLICT (seq) DO NOTHING

-- name: checkpoints
SELECT seq, hash, at, signer, signature, token FROM audit_checkpoints
WHERE seq > :after ORDER BY seq LIMIT :limit

-- name: last_checkpoint
SELECT seq, hash, at, signer, signature, token FROM audit_checkpoints
ORDER BY seq DESC LIMIT 1

-- name: witness
SELECT site, seq, hash, at, signer, signature, witness, witnessed_at, witness_signer,
       witness_signature, conflict, conflict_seq, conflict_hash, conflict_at
FROM audit_witness WHERE site = :site

-- name: witness_add
INSERT INTO audit_witness (site, seq, hash, at, signer, signature, witness,
    witnessed_at, witness_signer, witness_signature, conflict, conflict_seq,
    conflict_hash, conflict_at)
VALUES (:site, :seq, :hash, :at, :signer, :signature, :witness, :witnessed_at,
    :witness_signer, :witness_signature, :conflict, :conflict_seq, :conflict_hash,
    :conflict_at)
ON CONFLICT (site) DO NOTHING

-- name: witness_update
UPDATE audit_witness SET seq = :seq, hash = :hash, at = :at, signer = :signer,
    signature = :signature, witness = :witness, witnessed_at = :witnessed_at,
    witness_signer = :witness_signer, witness_signature = :witness_signature,
    conflict = :conflict, conflict_seq = :conflict_seq, conflict_hash = :conflict_hash,
    conflict_at = :conflict_at
WHERE site = :site AND seq = :expect_seq
