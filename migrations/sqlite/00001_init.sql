-- Lanyard schema v1 (SQLite). Column names follow gorm's default naming of the records
-- in internal/store. Declared types matter to the driver: DATETIME columns are parsed
-- back into time.Time, and times are always written in UTC so that their text form
-- sorts and compares chronologically. INTEGER is 64-bit; BLOB holds raw bytes.

-- +goose Up

-- agents: one row per registered non-human identity.
CREATE TABLE agents (
    id                      TEXT     NOT NULL PRIMARY KEY,
    client_id               TEXT     NOT NULL,
    name                    TEXT     NOT NULL,
    namespace               TEXT     NOT NULL,
    owner                   TEXT     NOT NULL DEFAULT '',
    purpose                 TEXT     NOT NULL DEFAULT '',
    risk_level              TEXT     NOT NULL DEFAULT '',
    status                  TEXT     NOT NULL DEFAULT '',
    status_reason           TEXT     NOT NULL DEFAULT '',
    credential_type         TEXT     NOT NULL DEFAULT '',
    token_alg               TEXT     NOT NULL DEFAULT '',
    reference               BLOB,
    allowed_scopes          TEXT     NOT NULL DEFAULT '[]',
    allowed_resources       TEXT     NOT NULL DEFAULT '[]',
    max_token_ttl_seconds   INTEGER  NOT NULL DEFAULT 0,
    attestation_ttl_seconds INTEGER  NOT NULL DEFAULT 0,
    can_introspect          BOOLEAN  NOT NULL DEFAULT 0,
    tokens_not_before       DATETIME,
    generation              INTEGER  NOT NULL DEFAULT 0,
    created_at              DATETIME NOT NULL,
    updated_at              DATETIME NOT NULL,
    CONSTRAINT agents_client_id_key UNIQUE (client_id),
    CONSTRAINT agents_namespace_name_key UNIQUE (namespace, name)
);
-- ListAgents filters on one column and pages by id: (filter, id) serves both the
-- equality and the ORDER BY id / id > cursor range without a sort.
CREATE INDEX agents_namespace_id_idx ON agents (namespace, id);
CREATE INDEX agents_owner_id_idx ON agents (owner, id);
CREATE INDEX agents_status_id_idx ON agents (status, id);

-- credentials: how an agent authenticates (public JWKS or a peppered secret hash).
CREATE TABLE credentials (
    id          TEXT     NOT NULL PRIMARY KEY,
    agent_id    TEXT     NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    type        TEXT     NOT NULL,
    state       TEXT     NOT NULL,
    jwks        BLOB,
    secret_hash BLOB,
    created_at  DATETIME NOT NULL,
    expires_at  DATETIME
);
CREATE INDEX credentials_agent_id_idx ON credentials (agent_id);

-- signing_keys: public metadata of Lanyard's token signing keys.
CREATE TABLE signing_keys (
    kid            TEXT     NOT NULL PRIMARY KEY,
    alg            TEXT     NOT NULL,
    state          TEXT     NOT NULL,
    public_jwk     BLOB     NOT NULL,
    secret_path    TEXT     NOT NULL DEFAULT '',
    secret_version INTEGER  NOT NULL DEFAULT 0,
    created_at     DATETIME NOT NULL,
    activated_at   DATETIME,
    retired_at     DATETIME,
    not_after      DATETIME
);

-- audit_events: the hash-chained audit log, keyed by its gap-free sequence number
-- (INTEGER PRIMARY KEY makes seq the rowid: the table is stored in chain order).
CREATE TABLE audit_events (
    seq        INTEGER  NOT NULL PRIMARY KEY CHECK (seq > 0),
    id         TEXT     NOT NULL,
    "time"     DATETIME NOT NULL,
    type       TEXT     NOT NULL,
    actor      TEXT     NOT NULL DEFAULT '',
    agent_id   TEXT     NOT NULL DEFAULT '',
    namespace  TEXT     NOT NULL DEFAULT '',
    outcome    TEXT     NOT NULL DEFAULT '',
    reason     TEXT     NOT NULL DEFAULT '',
    data       BLOB,
    request_id TEXT     NOT NULL DEFAULT '',
    prev_hash  BLOB,
    hash       BLOB     NOT NULL
);
CREATE INDEX audit_events_agent_id_seq_idx ON audit_events (agent_id, seq);
CREATE INDEX audit_events_type_seq_idx ON audit_events (type, seq);
CREATE INDEX audit_events_time_idx ON audit_events ("time");

-- The log is append-only. The hash chain detects tampering after the fact; these
-- triggers stop the application (or an injected statement) from rewriting history.
-- A retention policy will need a migration that replaces them deliberately.
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only (UPDATE refused)');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only (DELETE refused)');
END;
-- +goose StatementEnd

-- audit_head: the chain tip, a single row. SQLite has no row locks: appenders are
-- serialised by the database's single write transaction.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL CHECK (seq >= 0),
    hash BLOB
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, NULL);

-- revoked_tokens: revoked access tokens by jti, kept until the token would have expired.
CREATE TABLE revoked_tokens (
    jti        TEXT     NOT NULL PRIMARY KEY,
    agent_id   TEXT     NOT NULL DEFAULT '',
    expires_at DATETIME NOT NULL,
    revoked_at DATETIME NOT NULL
);
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);

-- settings: small server-wide values.
CREATE TABLE settings (
    "key" TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
);

-- +goose Down
DROP TABLE settings;
DROP TABLE revoked_tokens;
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP TABLE signing_keys;
DROP TABLE credentials;
DROP TABLE agents;
