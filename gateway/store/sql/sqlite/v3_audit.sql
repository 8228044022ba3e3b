-- Valise store schema, version 3: the hash-chained audit log (owned by gateway/audit.py).
SELECT 1;
