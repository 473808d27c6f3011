-- Ed25519 keys that sign the auth service's tokens when no SIGNING_KEY_PEM is supplied.
-- One row per generation: the newest generation signs, every row verifies. The primary key on
-- `generation` is what lets exactly one of several replicas starting together store the first key.
-- `kid` is the RFC 7638 thumbprint of the public key. The private key is stored as PKCS#8 PEM:
-- whoever can read this table can sign tokens (see migrations/README.md).
CREATE TABLE signing_keys (
    generation      BIGINT      NOT NULL,
    kid             VARCHAR(64) NOT NULL,
    algorithm       VARCHAR(16) NOT NULL,
    private_key_pem TEXT        NOT NULL,
    public_key_pem  TEXT        NOT NULL,
    created_at      DATETIME(6) NOT NULL,
    PRIMARY KEY (generation),
    CONSTRAINT signing_keys_kid_unique UNIQUE (kid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
