-- Attestation (PostgreSQL): challenges, verdicts and TPM counters.

-- +goose Up

-- attestation_challenges: single-use nonces, stored as SHA-256 of the nonce.
CREATE TABLE attestation_challenges (
    nonce_hash bytea       PRIMARY KEY,
    client_id  text        NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX attestation_challenges_expires_at_idx ON attestation_challenges (expires_at);

-- attestation_results: every verdict, kept for the agent's history and the audit trail.
CREATE TABLE attestation_results (
    id           text        PRIMARY KEY,
    agent_id     text        NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    status       text        NOT NULL,
    host         text        NOT NULL DEFAULT '',
    measurements bytea,
    checks       bytea,
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX attestation_results_agent_id_idx ON attestation_results (agent_id, id);

-- tpm_counters: the last accepted clock of each attestation key.
CREATE TABLE tpm_counters (
    ak_name       text        PRIMARY KEY,
    clock         bigint      NOT NULL,
    reset_count   bigint      NOT NULL,
    restart_count bigint      NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- +goose Down
DROP TABLE tpm_counters;
DROP TABLE attestation_results;
DROP TABLE attestation_challenges;
