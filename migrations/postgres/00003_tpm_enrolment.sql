-- TPM enrolment by credential activation (PostgreSQL): enrolled attestation keys and
-- the challenges of enrolments in progress.

-- +goose Up

-- tpm_enrolments: attestation keys proven to live in the same TPM as an endorsement key.
CREATE TABLE tpm_enrolments (
    ak_name        text PRIMARY KEY,
    ak_public      bytea NOT NULL,
    ek_public_hash text NOT NULL,
    ek_cert_status text NOT NULL,
    enrolled_by    text NOT NULL,
    enrolled_at    timestamptz NOT NULL
);

-- pending_tpm_enrolments: single-use credential-activation challenges; the secret is
-- stored only as its SHA-256.
CREATE TABLE pending_tpm_enrolments (
    id             text PRIMARY KEY,
    caller         text NOT NULL,
    ak_name        text NOT NULL,
    ak_public      bytea NOT NULL,
    ek_public_hash text NOT NULL,
    ek_cert_status text NOT NULL,
    secret_hash    bytea NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX pending_tpm_enrolments_expires_at_idx ON pending_tpm_enrolments (expires_at);

-- +goose Down
DROP TABLE pending_tpm_enrolments;
DROP TABLE tpm_enrolments;
