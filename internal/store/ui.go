package store

import (
	"context"
	"time"
)

// UI session kinds.
const (
	// UISessionLogin is an OIDC sign-in in progress (state, nonce, PKCE verifier).
	UISessionLogin = "login"
	// UISessionUser is a signed-in user.
	UISessionUser = "user"
)

// UISession is a server-side web UI session. The browser holds a random token; the
// store keys the session by SHA-256 of it, so the table alone signs nobody in.
type UISession struct {
	IDHash []byte `gorm:"primaryKey"`
	Kind   string
	// Data is a JSON document owned by package web (the principal, the CSRF token…).
	Data       []byte
	CreatedAt  time.Time
	LastSeenAt time.Time
	// ExpiresAt is the absolute end of the session; idle expiry is the caller's rule.
	ExpiresAt time.Time
}

// UISessions stores web UI sessions.
type UISessions interface {
	// CreateUISession inserts s; ErrConflict if its IDHash exists.
	CreateUISession(ctx context.Context, s *UISession) error
	// GetUISession returns the session, expired or not; ErrNotFound when absent.
	GetUISession(ctx context.Context, idHash []byte) (*UISession, error)
	// TouchUISession sets LastSeenAt; ErrNotFound when absent.
	TouchUISession(ctx context.Context, idHash []byte, at time.Time) error
	// DeleteUISession removes the session; deleting an absent one is not an error.
	DeleteUISession(ctx context.Context, idHash []byte) error
	// PurgeUISessions deletes sessions whose ExpiresAt is before now, or whose
	// LastSeenAt is before idleBefore.
	PurgeUISessions(ctx context.Context, now, idleBefore time.Time) (int64, error)
}

// Counter returns aggregate figures for the fleet dashboard.
type Counter interface {
	// CountAgentsBy counts agents per value of field: "status", "namespace" or
	// "risk_level". Values without agents are absent.
	CountAgentsBy(ctx context.Context, field string) (map[string]int64, error)
	// CountAudit counts events of type typ with since <= Time < until.
	CountAudit(ctx context.Context, typ string, since, until time.Time) (int64, error)
	// CountAttested counts active agents with an affirming attestation result that
	// has not expired at now.
	CountAttested(ctx context.Context, now time.Time) (int64, error)
	// CountStaleCredentials counts active agents whose active credential was created
	// before createdBefore.
	CountStaleCredentials(ctx context.Context, createdBefore time.Time) (int64, error)
	// RecentAudit returns events matching f, newest first: f.AfterSeq, when not 0, is
	// the exclusive upper bound on Seq (the cursor of a backwards page).
	RecentAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
}
