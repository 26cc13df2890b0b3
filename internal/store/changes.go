package store

import "time"

// Change kinds delivered by a change feed.
const (
	ChangeAgent   = "agent"
	ChangeRevoked = "revoked"
	ChangeKeys    = "keys"
	ChangeIssuers = "issuers"
)

// Change is one committed write, as another replica (or this one) made it.
type Change struct {
	Kind      string
	AgentID   string    // ChangeAgent
	ClientID  string    // ChangeAgent, when the agents row itself changed ("" otherwise)
	JTI       string    // ChangeRevoked
	ExpiresAt time.Time // ChangeRevoked
}

// ChangeHandler receives a feed's events. Calls are serialised (one goroutine).
type ChangeHandler interface {
	// Live reports the feed's state: true once LISTEN is in place (everything
	// committed before may have been missed, so a handler drops or reloads what it
	// caches), false when the connection is lost (a handler must stop trusting its
	// caches until the next Live(true)).
	Live(live bool)
	Changed(c Change)
}
