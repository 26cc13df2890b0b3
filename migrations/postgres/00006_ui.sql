-- Web UI (PostgreSQL): server-side sessions, and indexes for the fleet list and the dashboard.

-- +goose Up

-- ui_sessions: signed-in users and OIDC sign-ins in progress. The cookie holds a random
-- token; only its SHA-256 is stored, so a read of this table signs nobody in.
CREATE TABLE ui_sessions (
    id_hash      bytea       PRIMARY KEY,
    kind         text        NOT NULL,
    data         bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX ui_sessions_expires_at_idx ON ui_sessions (expires_at);

-- The fleet list filters by risk level; the dashboard counts events of a type in a
-- time window (tokens issued in the last hour).
CREATE INDEX agents_risk_level_id_idx ON agents (risk_level, id);
CREATE INDEX audit_events_type_time_idx ON audit_events (type, "time");

-- +goose Down
DROP INDEX audit_events_type_time_idx;
DROP INDEX agents_risk_level_id_idx;
DROP TABLE ui_sessions;
