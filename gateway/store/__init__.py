"""The store: one protocol (base.Store), two implementations (SQLite, PostgreSQL)."""
