-- Lanyard schema v1 (PostgreSQL). Column names follow gorm's default naming of the
-- records in internal/store; times are timestamptz and always written in UTC.

-- +goose Up

-- agents: one row per registered non-human identity.
CREATE TABLE agents (
    id                      text        PRIMARY KEY,
    client_id               text        NOT NULL,
    name                    text        NOT NULL,
    namespace               text        NOT NULL,
    owner                   text        NOT NULL DEFAULT '',
    purpose                 text        NOT NULL DEFAULT '',
    risk_level              text        NOT NULL DEFAULT '',
    status                  text        NOT NULL DEFAULT '',
    status_reason           text        NOT NULL DEFAULT '',
    credential_type         text        NOT NULL DEFAULT '',
    token_alg               text        NOT NULL DEFAULT '',
    reference               bytea,
    allowed_scopes          text        NOT NULL DEFAULT '[]',
    allowed_resources       text        NOT NULL DEFAULT '[]',
    max_token_ttl_seconds   bigint      NOT NULL DEFAULT 0,
    attestation_ttl_seconds bigint      NOT NULL DEFAULT 0,
    can_introspect          boolean     NOT NULL DEFAULT false,
    tokens_not_before       timestamptz,
    generation              bigint      NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
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
    id          text        PRIMARY KEY,
    agent_id    text        NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    type        text        NOT NULL,
    state       text        NOT NULL,
    jwks        bytea,
    secret_hash bytea,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz
);
CREATE INDEX credentials_agent_id_idx ON credentials (agent_id);

-- signing_keys: public metadata of Lanyard's token signing keys.
CREATE TABLE signing_keys (
    kid            text        PRIMARY KEY,
    alg            text        NOT NULL,
    state          text        NOT NULL,
    public_jwk     bytea       NOT NULL,
    secret_path    text        NOT NULL DEFAULT '',
    secret_version bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    activated_at   timestamptz,
    retired_at     timestamptz,
    not_after      timestamptz
);

-- audit_events: the hash-chained audit log, keyed by its gap-free sequence number.
CREATE TABLE audit_events (
    seq        bigint      PRIMARY KEY CHECK (seq > 0),
    id         text        NOT NULL,
    "time"     timestamptz NOT NULL,
    type       text        NOT NULL,
    actor      text        NOT NULL DEFAULT '',
    agent_id   text        NOT NULL DEFAULT '',
    namespace  text        NOT NULL DEFAULT '',
    outcome    text        NOT NULL DEFAULT '',
    reason     text        NOT NULL DEFAULT '',
    data       bytea,
    request_id text        NOT NULL DEFAULT '',
    prev_hash  bytea,
    hash       bytea       NOT NULL
);
CREATE INDEX audit_events_agent_id_seq_idx ON audit_events (agent_id, seq);
CREATE INDEX audit_events_type_seq_idx ON audit_events (type, seq);
CREATE INDEX audit_events_time_idx ON audit_events ("time");

-- The log is append-only. The hash chain detects tampering after the fact; these
-- triggers stop the application (or an injected statement) from rewriting history.
-- A retention policy will need a migration that replaces them deliberately.
-- +goose StatementBegin
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- audit_head: the chain tip, a single row. Appenders lock it with SELECT ... FOR UPDATE,
-- which serialises them across every server sharing the database.
CREATE TABLE audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint  NOT NULL CHECK (seq >= 0),
    hash bytea
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, NULL);

-- revoked_tokens: revoked access tokens by jti, kept until the token would have expired.
CREATE TABLE revoked_tokens (
    jti        text        PRIMARY KEY,
    agent_id   text        NOT NULL DEFAULT '',
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL
);
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);

-- settings: small server-wide values.
CREATE TABLE settings (
    key   text  PRIMARY KEY,
    value bytea NOT NULL
);

-- +goose Down
DROP TABLE settings;
DROP TABLE revoked_tokens;
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP TABLE signing_keys;
DROP TABLE credentials;
DROP TABLE agents;
