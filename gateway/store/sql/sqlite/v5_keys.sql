-- Valise store schema, version 5 (SQLite): at HQ, the highest directory version each
-- site has fetched, and when (valise directory status). Keep in step with ../postgres/.

CREATE TABLE directory_fetches (
    site        TEXT PRIMARY KEY,
    serial      INTEGER NOT NULL,
    at          TEXT NOT NULL
);
