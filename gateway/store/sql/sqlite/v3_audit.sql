-- Valise store schema, version 3 (SQLite): the hash-chained audit log (gateway/audit.py,
-- the encoding in gateway/store/audit_chain.py and docs/AUDIT.md). Every history row
-- gets its audit entry from the trigger below, in the same transaction; the chain hash
-- is taken at append time by valise_audit_hash(), a Python function every store
-- connection registers (gateway/store/sqlite_audit.py). No earlier history is copied
-- in: the log of an upgraded store starts at the upgrade. Keep in step with ../postgres/.

CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    result      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev        BLOB NOT NULL,
    hash        BLOB NOT NULL
);

-- Signed checkpoints: entry seq had this hash; an optional RFC 3161 token.
CREATE TABLE audit_checkpoints (
    seq         INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL,
    at          TEXT NOT NULL,
    signer      TEXT NOT NULL,
    signature   BLOB NOT NULL,
    token       BLOB
);

-- The actor of automatic events: this store's site id ('' until the site says it).
CREATE TABLE audit_site (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    site        TEXT NOT NULL
);

INSERT INTO audit_site (id, site) VALUES (1, '');

-- PostgreSQL's commit-time marker (see ../postgres/v3_audit.sql); unused here, where the
-- trigger below chains each row as it is inserted. Kept so that the schemas agree.
CREATE TABLE audit_flush (
    tx          TEXT PRIMARY KEY
);

CREATE TRIGGER history_audit AFTER INSERT ON history
BEGIN
    INSERT INTO audit (seq, at, actor, action, subject, result, detail, prev, hash)
    SELECT n.seq, NEW.at, n.actor, NEW.state, NEW.message_id, 'ok', n.detail, n.prev,
           valise_audit_hash(n.seq, NEW.at, n.actor, NEW.state, NEW.message_id, 'ok',
                             n.detail, n.prev)
    FROM (SELECT coalesce((SELECT max(seq) FROM audit), 0) + 1 AS seq,
                 coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1),
                          zeroblob(32)) AS prev,
                 (SELECT coalesce(nullif(site, ''), 'site') FROM audit_site
                  WHERE id = 1) AS actor,
                 valise_audit_detail(NEW.id, NEW.peer, NEW.reason) AS detail) AS n;
END;
