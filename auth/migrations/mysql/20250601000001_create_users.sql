-- Accounts of the auth service.
-- `email` holds the normalised (lower-case) address, so a plain UNIQUE index makes emails unique
-- case-insensitively on every engine; its binary collation keeps comparisons exact (MySQL 8's
-- default collation would otherwise treat "josé" and "jose" as the same address). Drivers report
-- binary-collated columns as bytes, so the service decodes `email` as UTF-8 bytes.
-- Timestamps are written by the service in UTC (portable: no engine-specific defaults).
CREATE TABLE users (
    id            CHAR(36)     NOT NULL,
    email         VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at    DATETIME(6)  NOT NULL,
    updated_at    DATETIME(6)  NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT users_email_unique UNIQUE (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
