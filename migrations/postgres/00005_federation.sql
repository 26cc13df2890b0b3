-- Federation (PostgreSQL): federated credentials (a token from a trusted external
-- issuer authenticates the agent), the trusted issuers, and the agent's Entra ID
-- outbound flag.

-- +goose Up

-- A federated credential names the external token it accepts: iss, sub and one aud,
-- compared exactly, optionally the azp/appid values and Entra's idtyp=app.
ALTER TABLE credentials
    ADD COLUMN issuer             text    NOT NULL DEFAULT '',
    ADD COLUMN subject            text    NOT NULL DEFAULT '',
    ADD COLUMN audience           text    NOT NULL DEFAULT '',
    ADD COLUMN allowed_client_ids text    NOT NULL DEFAULT '[]',
    ADD COLUMN require_app_token  boolean NOT NULL DEFAULT false;
-- One agent never holds the same federated identity twice.
CREATE UNIQUE INDEX credentials_federated_key ON credentials (agent_id, issuer, subject, audience) WHERE type = 'federated';

-- entra_federation: the agent may get RS256 tokens for api://AzureADTokenExchange.
ALTER TABLE agents ADD COLUMN entra_federation boolean NOT NULL DEFAULT false;

-- federation_issuers: external issuers an admin trusts; a token never implies trust.
CREATE TABLE federation_issuers (
    issuer     text        PRIMARY KEY,
    kind       text        NOT NULL,
    algs       text        NOT NULL DEFAULT '[]',
    jwks_url   text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE federation_issuers;
ALTER TABLE agents DROP COLUMN entra_federation;
DROP INDEX credentials_federated_key;
ALTER TABLE credentials
    DROP COLUMN require_app_token,
    DROP COLUMN allowed_client_ids,
    DROP COLUMN audience,
    DROP COLUMN subject,
    DROP COLUMN issuer;
