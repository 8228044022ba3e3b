-- Valise store schema, version 5 (PostgreSQL): at HQ, the highest directory version each
-- site has fetched, and when (valise directory status). Keep in step with ../sqlite/.

CREATE TABLE directory_fetches (
    site        TEXT PRIMARY KEY,
    serial      BIGINT NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);
