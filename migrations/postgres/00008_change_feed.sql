-- Change feed (PostgreSQL): every committed write to a table that a server caches
-- sends a NOTIFY on channel lanyard_changes, so that each replica drops what it cached
-- (gormstore.ChangeFeed listens). Triggers rather than the application send them: the
-- notification is part of the writing transaction (delivered on commit, never on
-- rollback) and covers every writer, including psql and older binaries.
--
-- Payload: schema TAB kind TAB key [TAB extra], where schema is the table's schema
-- (several deployments, or parallel tests, may share one database: a listener keeps
-- only its own schema's changes) and kind is one of
--   agent    key = the agent id; extra = its client_id when the agents row itself
--            changed (credentials and attestation_results rows carry no client_id)
--   revoked  key = the jti; extra = expires_at in Unix seconds, rounded up
--   keys     key empty: reload the signing key set
--   issuers  key empty: reload the federation issuers
-- PostgreSQL delivers identical payloads of one transaction once, so a statement that
-- touches many rows of one agent (a rotation retiring credentials) sends one.
--
-- The functions are created in the current schema, unqualified, and the triggers bind
-- them by identity, so the migration works in whichever schema search_path selects.

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION lanyard_notify_agents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('lanyard_changes',
            TG_TABLE_SCHEMA || E'\t' || 'agent' || E'\t' || OLD.id || E'\t' || OLD.client_id);
        RETURN NULL;
    END IF;
    -- A listener caches agents by client_id too: when it changes, the entry under the
    -- old one is stale as well. (The id never changes; the check costs nothing.)
    IF TG_OP = 'UPDATE' AND (OLD.id IS DISTINCT FROM NEW.id OR OLD.client_id IS DISTINCT FROM NEW.client_id) THEN
        PERFORM pg_notify('lanyard_changes',
            TG_TABLE_SCHEMA || E'\t' || 'agent' || E'\t' || OLD.id || E'\t' || OLD.client_id);
    END IF;
    PERFORM pg_notify('lanyard_changes',
        TG_TABLE_SCHEMA || E'\t' || 'agent' || E'\t' || NEW.id || E'\t' || NEW.client_id);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- lanyard_notify_agent_rows serves the tables whose rows belong to an agent by
-- agent_id. Their rows do not carry the agent's client_id, so the payload has no extra
-- field and the listener takes client_id = id: registration (lifecycle.Service.Register)
-- creates every agent with ClientID = ID and nothing changes it afterwards.
-- +goose StatementBegin
CREATE FUNCTION lanyard_notify_agent_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('lanyard_changes', TG_TABLE_SCHEMA || E'\t' || 'agent' || E'\t' || OLD.agent_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        -- Same payload as above on an UPDATE that kept agent_id: delivered once.
        PERFORM pg_notify('lanyard_changes', TG_TABLE_SCHEMA || E'\t' || 'agent' || E'\t' || NEW.agent_id);
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- A revocation is only ever inserted: rows are deleted once the token has expired
-- (PurgeRevocations), which changes nothing a listener needs to know. The expiry is
-- rounded up so that a listener never forgets a revocation before its token expires.
-- +goose StatementBegin
CREATE FUNCTION lanyard_notify_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lanyard_changes',
        TG_TABLE_SCHEMA || E'\t' || 'revoked' || E'\t' || NEW.jti || E'\t'
        || ceil(extract(epoch FROM NEW.expires_at))::bigint::text);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- lanyard_notify_kind sends the kind given as the trigger's argument with an empty
-- key, for tables a listener reloads whole (they hold a handful of rows).
-- +goose StatementBegin
CREATE FUNCTION lanyard_notify_kind() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lanyard_changes', TG_TABLE_SCHEMA || E'\t' || TG_ARGV[0] || E'\t');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER agents_notify AFTER INSERT OR UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION lanyard_notify_agents();
CREATE TRIGGER credentials_notify AFTER INSERT OR UPDATE OR DELETE ON credentials
    FOR EACH ROW EXECUTE FUNCTION lanyard_notify_agent_rows();
-- A new verdict changes what the token endpoint allows the agent.
CREATE TRIGGER attestation_results_notify AFTER INSERT OR UPDATE OR DELETE ON attestation_results
    FOR EACH ROW EXECUTE FUNCTION lanyard_notify_agent_rows();
CREATE TRIGGER revoked_tokens_notify AFTER INSERT ON revoked_tokens
    FOR EACH ROW EXECUTE FUNCTION lanyard_notify_revoked();
CREATE TRIGGER signing_keys_notify AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION lanyard_notify_kind('keys');
CREATE TRIGGER federation_issuers_notify AFTER INSERT OR UPDATE OR DELETE ON federation_issuers
    FOR EACH ROW EXECUTE FUNCTION lanyard_notify_kind('issuers');

-- +goose Down
DROP TRIGGER federation_issuers_notify ON federation_issuers;
DROP TRIGGER signing_keys_notify ON signing_keys;
DROP TRIGGER revoked_tokens_notify ON revoked_tokens;
DROP TRIGGER attestation_results_notify ON attestation_results;
DROP TRIGGER credentials_notify ON credentials;
DROP TRIGGER agents_notify ON agents;
DROP FUNCTION lanyard_notify_kind();
DROP FUNCTION lanyard_notify_revoked();
DROP FUNCTION lanyard_notify_agent_rows();
DROP FUNCTION lanyard_notify_agents();
