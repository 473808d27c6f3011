-- Accounts of the auth service (SQLite, all-in-one mode). Same shape as the MySQL table.
-- `email` holds the normalised (lower-case) address, so a plain UNIQUE constraint makes emails
-- unique case-insensitively; BINARY collation (SQLite's default, spelled out) keeps comparisons
-- exact. Timestamps are written by the service in UTC, as text (sqlx's chrono encoding).
-- STRICT makes SQLite refuse values of the wrong type instead of storing them anyway.
CREATE TABLE users (
    id            TEXT NOT NULL PRIMARY KEY,
    email         TEXT NOT NULL COLLATE BINARY,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    CONSTRAINT users_email_unique UNIQUE (email)
) STRICT;
