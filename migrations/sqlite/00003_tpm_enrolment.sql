-- TPM enrolment by credential activation (SQLite): enrolled attestation keys and
-- the challenges of enrolments in progress.

-- +goose Up

-- tpm_enrolments: attestation keys proven to live in the same TPM as an endorsement key.
CREATE TABLE tpm_enrolments (
    ak_name        TEXT PRIMARY KEY,
    ak_public      BLOB NOT NULL,
    ek_public_hash TEXT NOT NULL,
    ek_cert_status TEXT NOT NULL,
    enrolled_by    TEXT NOT NULL,
    enrolled_at    DATETIME NOT NULL
);

-- pending_tpm_enrolments: single-use credential-activation challenges; the secret is
-- stored only as its SHA-256.
CREATE TABLE pending_tpm_enrolments (
    id             TEXT PRIMARY KEY,
    caller         TEXT NOT NULL,
    ak_name        TEXT NOT NULL,
    ak_public      BLOB NOT NULL,
    ek_public_hash TEXT NOT NULL,
    ek_cert_status TEXT NOT NULL,
    secret_hash    BLOB NOT NULL,
    expires_at     DATETIME NOT NULL
);
CREATE INDEX pending_tpm_enrolments_expires_at_idx ON pending_tpm_enrolments (expires_at);

-- +goose Down
DROP TABLE pending_tpm_enrolments;
DROP TABLE tpm_enrolments;
