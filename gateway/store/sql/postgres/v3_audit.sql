-- Valise store schema, version 3 (PostgreSQL): the hash-chained audit log (gateway/audit.py,
-- the encoding in gateway/store/audit_chain.py and docs/AUDIT.md). Every history row gets
-- its audit entry from a deferred trigger, in the same transaction: the entries are
-- chained at commit, under a transaction advisory lock per schema, so several processes
-- sharing the database still write one linear chain, and the lock is held only from the
-- trigger to the end of the commit (after every other lock the transaction takes, so it
-- cannot deadlock). No earlier history is copied in: the log of an upgraded store starts
-- at the upgrade. Keep in step with ../sqlite/.

CREATE TABLE audit (
    seq         bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    result      text NOT NULL,
    detail      text NOT NULL,
    prev        bytea NOT NULL,
    hash        bytea NOT NULL
);

-- Signed checkpoints: entry seq had this hash; an optional RFC 3161 token.
CREATE TABLE audit_checkpoints (
    seq         bigint PRIMARY KEY,
    hash        bytea NOT NULL,
    at          timestamptz NOT NULL,
    signer      text NOT NULL,
    signature   bytea NOT NULL,
    token       bytea
);

-- The actor of automatic events: this store's site id ('' until the site says it).
CREATE TABLE audit_site (
    id          integer PRIMARY KEY CHECK (id = 1),
    site        text NOT NULL
);

INSERT INTO audit_site (id, site) VALUES (1, '');

-- str(x): x's UTF-8 bytes after their length (4 bytes, big endian).
CREATE FUNCTION valise_audit_text(t text) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT int4send(octet_length(convert_to(t, 'UTF8'))) || convert_to(t, 'UTF8')
$$;

-- The entry hash of gateway/store/audit_chain.py entry_hash().
CREATE FUNCTION valise_audit_hash(
    p_seq bigint, p_at timestamptz, p_actor text, p_action text, p_subject text,
    p_result text, p_detail text, p_prev bytea
) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(
        convert_to('valise/v1/audit-entry', 'UTF8') || decode('00', 'hex')
        || int8send(p_seq)
        || valise_audit_text(to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || valise_audit_text(p_actor) || valise_audit_text(p_action)
        || valise_audit_text(p_subject) || valise_audit_text(p_result)
        || valise_audit_text(p_detail) || p_prev)
$$;

-- Append one entry after the last one (the caller's transaction holds the chain's lock
-- from here until it ends).
CREATE FUNCTION valise_audit_append(
    p_at timestamptz, p_actor text, p_action text, p_subject text, p_result text,
    p_detail text
) RETURNS SETOF audit
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    last_seq bigint;
    last_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('valise.audit'), hashtext(current_schema()));
    SELECT a.seq, a.hash INTO last_seq, last_hash FROM audit a ORDER BY a.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_seq := 0;
        last_hash := decode(repeat('00', 32), 'hex');
    END IF;
    RETURN QUERY
        INSERT INTO audit (seq, at, actor, action, subject, result, detail, prev, hash)
        VALUES (last_seq + 1, p_at, p_actor, p_action, p_subject, p_result, p_detail,
                last_hash, valise_audit_hash(last_seq + 1, p_at, p_actor, p_action, p_subject,
                                             p_result, p_detail, last_hash))
        RETURNING audit.*;
END
$$;

-- History rows are chained at commit, a transaction's rows in one go: the statement
-- trigger below notes the ids each INSERT INTO history added (in the transaction-local
-- setting valise.audit_ids) and, for the transaction's first such statement, inserts
-- its row into audit_flush, whose deferred trigger appends the entries when the
-- transaction commits. No row of audit_flush outlives its transaction.
CREATE TABLE audit_flush (
    tx          text PRIMARY KEY
);

CREATE FUNCTION valise_audit_collect() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids text;
    pending text := coalesce(current_setting('valise.audit_ids', true), '');
BEGIN
    SELECT string_agg(n.id::text, ',' ORDER BY n.id) INTO ids FROM new_rows n;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    IF pending = '' THEN
        INSERT INTO audit_flush (tx) VALUES (pg_current_xact_id()::text);
        PERFORM set_config('valise.audit_ids', ids, true);
    ELSE
        PERFORM set_config('valise.audit_ids', pending || ',' || ids, true);
    END IF;
    RETURN NULL;
END
$$;

-- The entries of the transaction's history rows: action = the row's state, subject = its
-- message id, detail = its id, peer (when set) and reason as canonical JSON (keys sorted;
-- to_json escapes as Python's json.dumps does). Each entry's hash is SHA-256 of a body
-- (everything before prev, computed for all rows in one query) followed by prev, so the
-- loop that chains them does one sha256() a row; then one INSERT writes them all.
CREATE FUNCTION valise_audit_flush() RETURNS trigger
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    ids bigint[] := string_to_array(current_setting('valise.audit_ids'), ',')::bigint[];
    who text;
    last_seq bigint;
    first_prev bytea;
    h bytea;
    body bytea;
    hashes bytea[] := '{}';
BEGIN
    PERFORM set_config('valise.audit_ids', '', true);
    PERFORM pg_advisory_xact_lock(hashtext('valise.audit'), hashtext(current_schema()));
    SELECT coalesce(nullif(s.site, ''), 'site') INTO who FROM audit_site s WHERE s.id = 1;
    SELECT a.seq, a.hash INTO last_seq, first_prev FROM audit a ORDER BY a.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_seq := 0;
        first_prev := decode(repeat('00', 32), 'hex');
    END IF;
    h := first_prev;
    -- In id order, which is insertion order (a sequence only grows).
    FOR body IN
        SELECT convert_to('valise/v1/audit-entry', 'UTF8') || decode('00', 'hex')
            || int8send(last_seq + row_number() OVER (ORDER BY r.id))
            || valise_audit_text(to_char(r.at AT TIME ZONE 'UTC',
                                         'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
            || valise_audit_text(who) || valise_audit_text(r.state)
            || valise_audit_text(r.message_id) || valise_audit_text('ok')
            || valise_audit_text(r.detail)
        FROM (SELECT hh.id, hh.at, hh.state, hh.message_id,
                     '{"history":"' || hh.id::text || '"'
                     || CASE WHEN hh.peer IS NULL THEN ''
                             ELSE ',"peer":' || to_json(hh.peer)::text END
                     || ',"reason":' || to_json(hh.reason)::text || '}' AS detail
              FROM history hh WHERE hh.id = ANY(ids)) r
        ORDER BY r.id
    LOOP
        h := sha256(body || h);
        hashes := array_append(hashes, h);
    END LOOP;
    INSERT INTO audit (seq, at, actor, action, subject, result, detail, prev, hash)
    SELECT last_seq + r.n, r.at, who, r.state, r.message_id, 'ok', r.detail,
           coalesce(p.hash, first_prev), k.hash
    FROM (SELECT row_number() OVER (ORDER BY hh.id) AS n, hh.at, hh.state, hh.message_id,
                 '{"history":"' || hh.id::text || '"'
                 || CASE WHEN hh.peer IS NULL THEN ''
                         ELSE ',"peer":' || to_json(hh.peer)::text END
                 || ',"reason":' || to_json(hh.reason)::text || '}' AS detail
          FROM history hh WHERE hh.id = ANY(ids)) r
    JOIN unnest(hashes) WITH ORDINALITY AS k(hash, n) ON k.n = r.n
    LEFT JOIN unnest(hashes) WITH ORDINALITY AS p(hash, n) ON p.n = r.n - 1;
    DELETE FROM audit_flush f WHERE f.tx = NEW.tx;
    RETURN NULL;
END
$$;

CREATE TRIGGER history_audit AFTER INSERT ON history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION valise_audit_collect();

CREATE CONSTRAINT TRIGGER audit_flush_at_commit AFTER INSERT ON audit_flush
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION valise_audit_flush();
