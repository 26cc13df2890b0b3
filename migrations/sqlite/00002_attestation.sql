-- Attestation (SQLite): challenges, verdicts and TPM counters.

-- +goose Up

-- attestation_challenges: single-use nonces, stored as SHA-256 of the nonce.
CREATE TABLE attestation_challenges (
    nonce_hash BLOB       PRIMARY KEY,
    client_id  TEXT        NOT NULL,
    expires_at DATETIME NOT NULL
);
CREATE INDEX attestation_challenges_expires_at_idx ON attestation_challenges (expires_at);

-- attestation_results: every verdict, kept for the agent's history and the audit trail.
CREATE TABLE attestation_results (
    id           TEXT        PRIMARY KEY,
    agent_id     TEXT        NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    status       TEXT        NOT NULL,
    host         TEXT        NOT NULL DEFAULT '',
    measurements BLOB,
    checks       BLOB,
    issued_at    DATETIME NOT NULL,
    expires_at   DATETIME NOT NULL
);
CREATE INDEX attestation_results_agent_id_idx ON attestation_results (agent_id, id);

-- tpm_counters: the last accepted clock of each attestation key.
CREATE TABLE tpm_counters (
    ak_name       TEXT        PRIMARY KEY,
    clock         INTEGER      NOT NULL,
    reset_count   INTEGER      NOT NULL,
    restart_count INTEGER      NOT NULL,
    updated_at    DATETIME NOT NULL
);

-- +goose Down
DROP TABLE tpm_counters;
DROP TABLE attestation_results;
DROP TABLE attestation_challenges;
