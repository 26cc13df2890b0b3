-- Federation (SQLite): federated credentials (a token from a trusted external issuer
-- authenticates the agent), the trusted issuers, and the agent's Entra ID outbound flag.

-- +goose Up

-- A federated credential names the external token it accepts: iss, sub and one aud,
-- compared exactly, optionally the azp/appid values and Entra's idtyp=app.
ALTER TABLE credentials ADD COLUMN issuer TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN audience TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN allowed_client_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE credentials ADD COLUMN require_app_token BOOLEAN NOT NULL DEFAULT 0;
-- One agent never holds the same federated identity twice.
CREATE UNIQUE INDEX credentials_federated_key ON credentials (agent_id, issuer, subject, audience) WHERE type = 'federated';

-- entra_federation: the agent may get RS256 tokens for api://AzureADTokenExchange.
ALTER TABLE agents ADD COLUMN entra_federation BOOLEAN NOT NULL DEFAULT 0;

-- federation_issuers: external issuers an admin trusts; a token never implies trust.
CREATE TABLE federation_issuers (
    issuer     TEXT     NOT NULL PRIMARY KEY,
    kind       TEXT     NOT NULL,
    algs       TEXT     NOT NULL DEFAULT '[]',
    jwks_url   TEXT     NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE federation_issuers;
ALTER TABLE agents DROP COLUMN entra_federation;
DROP INDEX credentials_federated_key;
ALTER TABLE credentials DROP COLUMN require_app_token;
ALTER TABLE credentials DROP COLUMN allowed_client_ids;
ALTER TABLE credentials DROP COLUMN audience;
ALTER TABLE credentials DROP COLUMN subject;
ALTER TABLE credentials DROP COLUMN issuer;
