-- Ed25519 keys that sign the auth service's tokens when no SIGNING_KEY_PEM is supplied (SQLite,
-- all-in-one mode). One row per generation: the newest signs, every row verifies; the primary key
-- on `generation` lets exactly one of two instances starting together store the first key.
-- The private key is stored as PKCS#8 PEM: whoever can read the file can sign tokens.
CREATE TABLE signing_keys (
    generation      INTEGER NOT NULL PRIMARY KEY,
    kid             TEXT    NOT NULL,
    algorithm       TEXT    NOT NULL,
    private_key_pem TEXT    NOT NULL,
    public_key_pem  TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    CONSTRAINT signing_keys_kid_unique UNIQUE (kid)
) STRICT;
