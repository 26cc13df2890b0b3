-- Outstanding challenges are counted per client on every challenge request (a client
-- may hold only a few at once), so the count needs an index that starts with client_id.

-- +goose Up
CREATE INDEX attestation_challenges_client_id_idx ON attestation_challenges (client_id, expires_at);

-- +goose Down
DROP INDEX attestation_challenges_client_id_idx;
