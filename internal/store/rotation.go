package store

import (
	"context"
	"time"
)

// Rotation kinds.
const (
	RotationAgentCredential = "agent_credential"
	RotationSigningKey      = "signing_key"
)

// Rotation steps, in order. A rotation is persisted after each step; Finished rotations
// have FinishedAt set and Step StepDone, StepSuperseded or StepFailed.
const (
	// StepStarted: the row exists; NewRef names the credential (or nothing yet for a key).
	StepStarted = "started"
	// StepStored: the new secret is in the secrets backend at SecretPath/SecretVersion.
	StepStored = "stored"
	// StepNext: the new credential or key is recorded in the database as next (a
	// signing key is published in the JWKS from here on).
	StepNext = "next"
	// StepActive: the new one is active; the old one is in its grace period until
	// GraceUntil (an agent credential) or published until it expires (a signing key).
	StepActive = "active"
	// StepDone: the old one is retired.
	StepDone = "done"
	// StepSuperseded: a later rotation of the same subject took over.
	StepSuperseded = "superseded"
	// StepFailed: the rotation cannot complete (the agent was decommissioned, say).
	StepFailed = "failed"
)

// Rotation is one rotation of an agent credential or a signing key.
type Rotation struct {
	ID      string `gorm:"primaryKey"` // "rot_" + time-ordered random
	Kind    string // RotationAgentCredential or RotationSigningKey
	Subject string // the agent id, or the algorithm of a signing key
	Step    string
	// Cause is "scheduled" or "manual"; Actor who asked for a manual one.
	Cause string
	Actor string
	// NewRef and OldRef name the new and the replaced credential id (or kid).
	NewRef string
	OldRef string
	// SecretPath and SecretVersion locate the new secret once stored.
	SecretPath    string
	SecretVersion int
	GraceSeconds  int64
	// Attempts counts failed attempts of the current step; LastError is the last one.
	Attempts  int
	LastError string
	// NotBefore delays the next step: backoff after a failure, the publish-ahead
	// period of a signing key, the grace period of an agent credential.
	NotBefore  *time.Time
	GraceUntil *time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt *time.Time
}

// RotationPolicy is an agent's override of the server's rotation schedule.
type RotationPolicy struct {
	AgentID string `gorm:"primaryKey"`
	// IntervalSeconds is how often to rotate (0: never); GraceSeconds how long the old
	// credential keeps working.
	IntervalSeconds int64
	GraceSeconds    int64
	UpdatedAt       time.Time
}

// DueCredential is an agent's active credential with its age and policy.
type DueCredential struct {
	AgentID   string
	Namespace string
	Name      string
	Status    string
	Credential
	// Policy is the agent's override, if any.
	Policy *RotationPolicy
}

// Rotations stores rotations, leases and rotation policies. Implementations pass the
// storetest rotation suite on every dialect.
type Rotations interface {
	// CreateRotation inserts r. ErrConflict when the subject already has an unfinished
	// rotation (or the id exists).
	CreateRotation(ctx context.Context, r *Rotation) error
	// UpdateRotation is a compare-and-swap closure on the rotation with id.
	UpdateRotation(ctx context.Context, id string, fn func(r *Rotation) error) (*Rotation, error)
	// OpenRotations returns every unfinished rotation, oldest first.
	OpenRotations(ctx context.Context) ([]Rotation, error)
	// ListRotations returns a subject's rotations, newest first, at most limit.
	ListRotations(ctx context.Context, kind, subject string, limit int) ([]Rotation, error)

	// AcquireLease takes or renews the lease name for owner until expiresAt, and
	// reports whether owner holds it: it does when the lease is free, expired (before
	// now), or already owner's.
	AcquireLease(ctx context.Context, name, owner string, now, expiresAt time.Time) (bool, error)
	// ReleaseLease gives the lease up if owner holds it.
	ReleaseLease(ctx context.Context, name, owner string) error

	// PutRotationPolicy creates or replaces an agent's policy; DeleteRotationPolicy
	// removes it (not an error when absent). GetRotationPolicy: ErrNotFound if none.
	PutRotationPolicy(ctx context.Context, p *RotationPolicy) error
	GetRotationPolicy(ctx context.Context, agentID string) (*RotationPolicy, error)
	DeleteRotationPolicy(ctx context.Context, agentID string) error

	// ActiveCredentials returns the active credentials (federated ones excepted: they
	// are not rotated) of agents that are not revoked or decommissioned, with their agent's policy, ordered by agent id, after the
	// agent id cursor, at most limit (<= 0: 1000). With policyOnly, only the credentials
	// of agents whose own policy has an interval (what the scheduler needs when the
	// fleet-wide default is off: a join on the few policies, not a walk over the fleet).
	ActiveCredentials(ctx context.Context, afterAgentID string, limit int, policyOnly bool) ([]DueCredential, error)
	// DeleteExpiredCredentials deletes the agent's retiring credentials whose grace
	// ended before now and returns how many.
	DeleteExpiredCredentials(ctx context.Context, agentID string, now time.Time) (int64, error)
	// GetAgentByName returns the agent named name in namespace.
	GetAgentByName(ctx context.Context, namespace, name string) (*Agent, error)

	// AddSecretDestroy records a secrets backend path whose destruction must be retried;
	// SecretDestroys lists them; DoneSecretDestroy removes one.
	AddSecretDestroy(ctx context.Context, path, reason string) error
	SecretDestroys(ctx context.Context) ([]string, error)
	DoneSecretDestroy(ctx context.Context, path string) error
}
