-- Credentials in the secrets backend and scheduled rotation (SQLite).

-- +goose Up

-- Where a Lanyard-generated credential's secret lives in the secrets backend (Vault KV
-- or the local store): the database keeps only its hash or public key.
ALTER TABLE credentials ADD COLUMN secret_path TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN secret_version INTEGER NOT NULL DEFAULT 0;
-- The scheduler finds due credentials by age.
CREATE INDEX credentials_state_created_at_idx ON credentials (state, created_at);

-- rotations: one row per rotation, its state machine's step persisted after every
-- step so that a restart (on any replica) resumes it. At most one unfinished rotation
-- per subject (an agent's credential, or the signing key of one algorithm).
CREATE TABLE rotations (
    id             TEXT     NOT NULL PRIMARY KEY,
    kind           TEXT     NOT NULL,
    subject        TEXT     NOT NULL,
    step           TEXT     NOT NULL,
    cause          TEXT     NOT NULL DEFAULT '',
    actor          TEXT     NOT NULL DEFAULT '',
    new_ref        TEXT     NOT NULL DEFAULT '',
    old_ref        TEXT     NOT NULL DEFAULT '',
    secret_path    TEXT     NOT NULL DEFAULT '',
    secret_version INTEGER  NOT NULL DEFAULT 0,
    grace_seconds  INTEGER  NOT NULL DEFAULT 0,
    attempts       INTEGER  NOT NULL DEFAULT 0,
    last_error     TEXT     NOT NULL DEFAULT '',
    not_before     DATETIME,
    grace_until    DATETIME,
    created_at     DATETIME NOT NULL,
    updated_at     DATETIME NOT NULL,
    finished_at    DATETIME
);
CREATE UNIQUE INDEX rotations_open_subject_key ON rotations (kind, subject) WHERE finished_at IS NULL;
CREATE INDEX rotations_subject_created_at_idx ON rotations (kind, subject, created_at);

-- leases: named database leases (the rotation scheduler's), held by one owner until
-- expires_at and renewed while it works.
CREATE TABLE leases (
    name       TEXT     NOT NULL PRIMARY KEY,
    owner      TEXT     NOT NULL,
    expires_at DATETIME NOT NULL
);

-- rotation_policies: per-agent overrides of the server's rotation schedule.
CREATE TABLE rotation_policies (
    agent_id         TEXT     NOT NULL PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    interval_seconds INTEGER  NOT NULL,
    grace_seconds    INTEGER  NOT NULL,
    updated_at       DATETIME NOT NULL
);

-- secret_destroys: secrets whose destruction failed (the backend was unreachable when an
-- agent was decommissioned); the scheduler retries them.
CREATE TABLE secret_destroys (
    path       TEXT     NOT NULL PRIMARY KEY,
    reason     TEXT     NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE secret_destroys;
DROP TABLE rotation_policies;
DROP TABLE leases;
DROP TABLE rotations;
DROP INDEX credentials_state_created_at_idx;
ALTER TABLE credentials DROP COLUMN secret_version;
ALTER TABLE credentials DROP COLUMN secret_path;
