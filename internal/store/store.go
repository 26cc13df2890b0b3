// Package store defines Lanyard's persistent records and the small, per-aggregate
// interfaces the domain packages use to read and write them.
//
// The records here are plain Go structs: they carry gorm column tags so the gorm
// implementation (package gormstore) can map them, but no gorm type appears in any
// signature. Every implementation must pass the conformance suite in package storetest.
//
// Contract shared by all interfaces:
//   - A missing record is reported as ErrNotFound (wrapped); a uniqueness violation as
//     ErrConflict (wrapped). Callers test with errors.Is.
//   - Update methods are compare-and-swap closures: the implementation loads the record
//     inside a transaction, calls fn, and writes the result back only if fn returns nil.
//     An error from fn aborts the update and is returned unchanged.
//   - Times are stored and returned in UTC.
//   - Times are stored at microsecond resolution (PostgreSQL's): anything that hashes
//     or compares a time it will store must truncate it first.
package store

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Implementations wrap them with context.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: conflict")
)

// Agent lifecycle states.
const (
	StatusPending        = "pending"
	StatusActive         = "active"
	StatusSuspended      = "suspended"
	StatusRevoked        = "revoked"
	StatusDecommissioned = "decommissioned"
)

// Credential types and states.
const (
	CredentialPrivateKeyJWT = "private_key_jwt"
	CredentialClientSecret  = "client_secret"
	// CredentialFederated is a token from a trusted external issuer (Entra ID, GitHub
	// Actions, Kubernetes, SPIRE). An agent may have several; rotation leaves them alone.
	CredentialFederated = "federated"

	// CredentialActive is the credential an agent authenticates with.
	CredentialActive = "active"
	// CredentialRetiring is a rotated-out credential still accepted until ExpiresAt.
	CredentialRetiring = "retiring"
)

// Signing key states, in the order a key passes through them.
const (
	KeyNext    = "next"    // published in JWKS, not yet signing
	KeyActive  = "active"  // signs new tokens (one per algorithm)
	KeyRetired = "retired" // published until NotAfter, no longer signing
)

// StringList is a list of strings stored as a JSON array in one text column.
type StringList []string

// Value implements driver.Valuer.
func (l StringList) Value() (driver.Value, error) {
	if l == nil {
		return "[]", nil
	}
	b, err := json.Marshal([]string(l))
	return string(b), err
}

// Scan implements sql.Scanner.
func (l *StringList) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		*l = nil
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("store: cannot scan %T into StringList", src)
	}
	return json.Unmarshal(b, (*[]string)(l))
}

// Agent is a registered non-human identity.
type Agent struct {
	ID        string `gorm:"primaryKey"` // "agt_" + time-ordered random; list order is ID order
	ClientID  string `gorm:"uniqueIndex"`
	Name      string
	Namespace string
	Owner     string
	Purpose   string
	RiskLevel string
	Status    string
	// StatusReason is the reason given with the last state change.
	StatusReason string
	// CredentialType is CredentialPrivateKeyJWT or CredentialClientSecret.
	CredentialType string
	// TokenAlg is the JWS algorithm of this agent's access tokens (ES256 or RS256).
	TokenAlg string
	// Reference holds the reference measurements as a JSON document (owned by the
	// attestation package; opaque here).
	Reference        []byte
	AllowedScopes    StringList
	AllowedResources StringList
	// MaxTokenTTL and AttestationTTL are stored in whole seconds.
	MaxTokenTTLSeconds    int64
	AttestationTTLSeconds int64
	// CanIntrospect lets the agent act as a resource server at /oauth2/introspect.
	CanIntrospect bool
	// TokensNotBefore invalidates every token issued before it (set on suspend and
	// revoke, so resuming an agent does not revive tokens that were cut off).
	TokensNotBefore *time.Time
	// Generation increases by one on every update; caches compare it.
	Generation int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// EntraFederation lets the agent obtain tokens for Entra ID's workload identity
	// federation audience (api://AzureADTokenExchange), signed RS256.
	EntraFederation bool
}

// Credential is one way an agent authenticates at the token endpoint.
type Credential struct {
	ID      string `gorm:"primaryKey"` // "crd_" + random
	AgentID string `gorm:"index"`
	Type    string
	State   string
	// JWKS is the public JSON Web Key Set for private_key_jwt credentials.
	JWKS []byte
	// SecretHash is HMAC-SHA-256(pepper, secret) for client_secret credentials.
	SecretHash []byte
	CreatedAt  time.Time
	// ExpiresAt is set on retiring credentials: the end of their grace period.
	ExpiresAt *time.Time
	// SecretPath and SecretVersion say where a credential Lanyard generated (a client
	// secret, a generated private key) lives in the secrets backend; empty for
	// credentials whose secret Lanyard never held (an agent-supplied JWKS).
	SecretPath    string
	SecretVersion int
	// Issuer, Subject and Audience name the external token a federated credential
	// accepts (its iss, sub and one of its aud values, all compared exactly).
	Issuer   string
	Subject  string
	Audience string
	// AllowedClientIDs, when not empty, lists the azp / appid values accepted.
	AllowedClientIDs StringList `gorm:"column:allowed_client_ids"`
	// RequireAppToken requires an Entra app-only token (idtyp "app").
	RequireAppToken bool
}

// FederationIssuer is an external token issuer trusted for federated credentials.
type FederationIssuer struct {
	// Issuer is the exact iss of its tokens.
	Issuer string `gorm:"primaryKey"`
	// Kind is "entra" (tid, oid, uti and idtyp checks apply) or "oidc".
	Kind string
	// Algs are the accepted JWS algorithms.
	Algs StringList
	// JWKSURL overrides the jwks_uri of the issuer's discovery document.
	JWKSURL   string `gorm:"column:jwks_url"`
	CreatedAt time.Time
}

// SigningKey records one of Lanyard's token signing keys. The private key lives in the
// secrets backend at SecretPath/SecretVersion; only public material is stored here.
type SigningKey struct {
	KID           string `gorm:"primaryKey;column:kid"`
	Alg           string
	State         string
	PublicJWK     []byte `gorm:"column:public_jwk"`
	SecretPath    string
	SecretVersion int
	CreatedAt     time.Time
	ActivatedAt   *time.Time
	RetiredAt     *time.Time
	// NotAfter is when a retired key leaves the JWKS: after the last token it signed expires.
	NotAfter *time.Time
}

// AuditEvent is one record of the hash-chained audit log.
// Hash = SHA-256(PrevHash || canonical(event)); see package audit for the canonical form.
type AuditEvent struct {
	Seq       int64 `gorm:"primaryKey;autoIncrement:false"`
	ID        string
	Time      time.Time
	Type      string // e.g. agent.registered, token.issued, token.refused
	Actor     string // "admin", "agent:<id>", "system"
	AgentID   string
	Namespace string
	Outcome   string // success | failure
	Reason    string
	Data      []byte // JSON object with event-specific detail
	RequestID string
	PrevHash  []byte
	Hash      []byte
}

// AuditHead is the tip of the audit chain: the last sequence number and its hash.
// The zero head (Seq 0, Hash nil) means the log is empty.
type AuditHead struct {
	Seq  int64
	Hash []byte
}

// RevokedToken marks an access token (by jti) as revoked until it would have expired.
type RevokedToken struct {
	JTI       string `gorm:"primaryKey;column:jti"`
	AgentID   string
	ExpiresAt time.Time
	RevokedAt time.Time
}

// AgentFilter selects agents for ListAgents. Empty fields match everything.
type AgentFilter struct {
	Namespace string
	Owner     string
	Status    string
	// After is the exclusive lower bound on ID (the cursor).
	After string
	// Limit caps the page size; implementations treat <= 0 as 100.
	Limit int
	// RiskLevel matches the agent's risk level exactly.
	RiskLevel string
	// NameContains matches agents whose name contains it, case-insensitively.
	NameContains string
	// Namespaces, when not nil, restricts the result to these namespaces (nil: no
	// restriction; empty but not nil: nothing). The web UI sets it to the namespaces
	// a scoped viewer may see.
	Namespaces []string
}

// AuditFilter selects audit events for ListAudit. Empty fields match everything.
type AuditFilter struct {
	AgentID string
	Type    string
	Outcome string
	// Since and Until bound Time: events with Since <= Time < Until. A zero bound is open.
	Since time.Time
	Until time.Time
	// AfterSeq is the exclusive lower bound on Seq (the cursor).
	AfterSeq int64
	// Limit caps the page size; implementations treat <= 0 as 100.
	Limit int
}

// Agents stores agents and their credentials.
type Agents interface {
	// CreateAgent inserts the agent and its first credential atomically.
	// ErrConflict if an agent with the same namespace and name, ID or client ID exists.
	CreateAgent(ctx context.Context, a *Agent, c *Credential) error
	GetAgent(ctx context.Context, id string) (*Agent, error)
	GetAgentByClientID(ctx context.Context, clientID string) (*Agent, error)
	// ListAgents returns agents ordered by ID ascending.
	ListAgents(ctx context.Context, f AgentFilter) ([]Agent, error)
	// UpdateAgent is a compare-and-swap update; it increments Generation and sets UpdatedAt.
	UpdateAgent(ctx context.Context, id string, fn func(a *Agent) error) (*Agent, error)
	// CountAgentsByStatus returns the number of agents in each status.
	CountAgentsByStatus(ctx context.Context) (map[string]int64, error)
}

// Credentials stores agent credentials.
type Credentials interface {
	// ListCredentials returns the agent's credentials, newest first.
	ListCredentials(ctx context.Context, agentID string) ([]Credential, error)
	// RotateCredential atomically marks every active credential of the agent retiring
	// with ExpiresAt = graceUntil, inserts next as the active credential, and bumps the
	// agent's Generation so caches reload.
	RotateCredential(ctx context.Context, agentID string, next *Credential, graceUntil time.Time) error
	// DeleteCredentials destroys every credential of the agent and bumps its Generation.
	DeleteCredentials(ctx context.Context, agentID string) error
}

// SigningKeys stores signing key metadata.
type SigningKeys interface {
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// ListSigningKeys returns all keys, oldest first.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	UpdateSigningKey(ctx context.Context, kid string, fn func(k *SigningKey) error) (*SigningKey, error)
}

// AuditLog stores the audit chain.
type AuditLog interface {
	// AppendAudit locks the chain head (so concurrent writers on one database
	// serialise), calls build with it, and inserts the events build returns (which must
	// already carry Seq, PrevHash and Hash continuing the head) in the same transaction.
	// Events that do not continue the head (a Seq other than head.Seq+1, +2, …, or a
	// PrevHash other than the previous Hash) are refused and nothing changes. An error
	// from build is returned unchanged; no events is a no-op.
	AppendAudit(ctx context.Context, build func(head AuditHead) ([]AuditEvent, error)) error
	// ListAudit returns events ordered by Seq ascending.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// AuditHead returns the current head without locking.
	AuditHead(ctx context.Context) (AuditHead, error)
}

// Revocations stores revoked access tokens.
type Revocations interface {
	// RevokeToken records the revocation; revoking an already revoked jti is not an error.
	RevokeToken(ctx context.Context, t RevokedToken) error
	IsTokenRevoked(ctx context.Context, jti string) (bool, error)
	// ListRevocations returns every revocation whose token expires at or after now:
	// what a replica loads to answer revocation checks from memory.
	ListRevocations(ctx context.Context, now time.Time) ([]RevokedToken, error)
	// PurgeRevocations deletes revocations whose token expired before now.
	PurgeRevocations(ctx context.Context, now time.Time) (int64, error)
}

// Settings stores small server-wide values (the admin token hash, for example).
type Settings interface {
	GetSetting(ctx context.Context, key string) ([]byte, error)
	// PutSettingIfAbsent stores value unless key exists; it reports whether it stored.
	PutSettingIfAbsent(ctx context.Context, key string, value []byte) (bool, error)
	PutSetting(ctx context.Context, key string, value []byte) error
}

// Attestation verdicts.
const (
	AttestationAffirming       = "affirming"
	AttestationContraindicated = "contraindicated"
)

// AttestationResult is the verdict on one piece of evidence an agent presented.
type AttestationResult struct {
	ID      string `gorm:"primaryKey"` // "att_" + time-ordered random
	AgentID string `gorm:"index"`
	Status  string // AttestationAffirming or AttestationContraindicated
	// Host is how the host was measured: "tpm", "sigstore", "tpm+sigstore" or "none".
	Host string
	// Measurements is the JSON of the measured digests; Checks the JSON list of every
	// check's outcome (owned by package attest; opaque here).
	Measurements []byte
	Checks       []byte
	IssuedAt     time.Time
	ExpiresAt    time.Time
}

// AttestationChallenge is a single-use nonce handed to one client.
type AttestationChallenge struct {
	// NonceHash is SHA-256 of the nonce bytes: the nonce itself is never stored.
	NonceHash []byte `gorm:"primaryKey"`
	ClientID  string
	ExpiresAt time.Time
}

// TPMCounters are the last accepted clock counters of a TPM attestation key, so that an
// old quote cannot be replayed.
type TPMCounters struct {
	AKName       string `gorm:"primaryKey;column:ak_name"` // hex TPM Name of the AK
	Clock        int64
	ResetCount   int64
	RestartCount int64
	UpdatedAt    time.Time
}

// Attestations stores challenges, verdicts and TPM counters.
type Attestations interface {
	CreateChallenge(ctx context.Context, c *AttestationChallenge) error
	// ConsumeChallenge deletes the challenge with nonceHash and returns it: a nonce is
	// usable once. ErrNotFound when there is none (never issued, or already used).
	// Expired challenges are returned too; the caller checks ExpiresAt.
	ConsumeChallenge(ctx context.Context, nonceHash []byte) (*AttestationChallenge, error)
	// PurgeChallenges deletes challenges that expired before now.
	PurgeChallenges(ctx context.Context, now time.Time) (int64, error)
	// CountChallenges counts the client's challenges that are still valid at now.
	CountChallenges(ctx context.Context, clientID string, now time.Time) (int64, error)
	CreateAttestation(ctx context.Context, r *AttestationResult) error
	// ListAttestations returns the agent's results, newest first, at most limit (<= 0: 100).
	ListAttestations(ctx context.Context, agentID string, limit int) ([]AttestationResult, error)
	// UpdateTPMCounters is a compare-and-swap on the AK's counters: fn gets the stored
	// counters (nil the first time) and returns the new ones, or an error that aborts.
	UpdateTPMCounters(ctx context.Context, akName string, fn func(cur *TPMCounters) (*TPMCounters, error)) error
}

// Federation stores trusted external issuers and the federated credentials that are
// added to and removed from an agent one at a time.
type Federation interface {
	// CreateFederationIssuer inserts i; ErrConflict if its Issuer exists.
	CreateFederationIssuer(ctx context.Context, i *FederationIssuer) error
	// ListFederationIssuers returns every issuer ordered by Issuer.
	ListFederationIssuers(ctx context.Context) ([]FederationIssuer, error)
	// DeleteFederationIssuer deletes the issuer; ErrNotFound if there is none.
	DeleteFederationIssuer(ctx context.Context, issuer string) error
	// AddCredential inserts c as another active credential of the agent and bumps its
	// Generation. ErrNotFound if the agent does not exist.
	AddCredential(ctx context.Context, agentID string, c *Credential) error
	// DeleteCredential deletes one credential of the agent and bumps its Generation.
	// ErrNotFound if the agent has no such credential.
	DeleteCredential(ctx context.Context, agentID, credentialID string) error
}

// Store is everything the server needs from its database.
type Store interface {
	Agents
	Credentials
	Federation
	SigningKeys
	AuditLog
	Revocations
	Settings
	Attestations
	TPMEnrolments
	// Ping checks the database is reachable (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// EK certificate states of an enrolled attestation key.
const (
	// EKCertVerified: the EK certificate chains to the configured manufacturer CA bundle
	// and certifies the EK the AK was activated with.
	EKCertVerified = "verified"
	// EKCertUnverified: an EK certificate was sent and certifies the EK, but no CA bundle
	// is configured to check who issued it.
	EKCertUnverified = "unverified"
	// EKCertAbsent: no EK certificate was sent (none in the TPM's NV storage).
	EKCertAbsent = "absent"
)

// TPMEnrolment is an attestation key that proved, by credential activation, that it
// lives in the same TPM as an endorsement key (EK).
type TPMEnrolment struct {
	// AKName is the hex TPM Name of the AK (name algorithm || digest of its public area).
	AKName string `gorm:"primaryKey;column:ak_name"`
	// AKPublic is the AK's TPM2B_PUBLIC.
	AKPublic []byte `gorm:"column:ak_public"`
	// EKPublicHash is the hex SHA-256 of the EK's public key in PKIX (SubjectPublicKeyInfo) DER.
	EKPublicHash string `gorm:"column:ek_public_hash"`
	// EKCertStatus is EKCertVerified, EKCertUnverified or EKCertAbsent.
	EKCertStatus string `gorm:"column:ek_cert_status"`
	EnrolledBy   string
	EnrolledAt   time.Time
}

// PendingTPMEnrolment is a credential-activation challenge waiting for its answer.
type PendingTPMEnrolment struct {
	ID string `gorm:"primaryKey"` // "tpe_" + random
	// Caller identifies who started the enrolment (a hash of its credential); only the
	// same caller may finish it.
	Caller       string
	AKName       string `gorm:"column:ak_name"`
	AKPublic     []byte `gorm:"column:ak_public"`
	EKPublicHash string `gorm:"column:ek_public_hash"`
	EKCertStatus string `gorm:"column:ek_cert_status"`
	// SecretHash is SHA-256 of the secret sealed to the EK: the secret is never stored.
	SecretHash []byte
	ExpiresAt  time.Time
}

// TPMEnrolments stores enrolled attestation keys and pending enrolments.
type TPMEnrolments interface {
	// CreatePendingTPMEnrolment stores p. ErrConflict if the id exists.
	CreatePendingTPMEnrolment(ctx context.Context, p *PendingTPMEnrolment) error
	// ConsumePendingTPMEnrolment deletes the pending enrolment and returns it: it is
	// usable once. ErrNotFound when there is none. Expired ones are returned too; the
	// caller checks ExpiresAt.
	ConsumePendingTPMEnrolment(ctx context.Context, id string) (*PendingTPMEnrolment, error)
	// PurgePendingTPMEnrolments deletes pending enrolments that expired before now.
	PurgePendingTPMEnrolments(ctx context.Context, now time.Time) (int64, error)
	// PutTPMEnrolment records e, replacing an earlier enrolment of the same AK.
	PutTPMEnrolment(ctx context.Context, e *TPMEnrolment) error
	// GetTPMEnrolment returns the enrolment of the AK with the given hex Name, or ErrNotFound.
	GetTPMEnrolment(ctx context.Context, akName string) (*TPMEnrolment, error)
}

// Change kinds delivered by a ChangeFeed.
const (
	ChangeAgent   = "agent"
	ChangeRevoked = "revoked"
	ChangeKeys    = "keys"
	ChangeIssuers = "issuers"
)

// Change is one committed write, as another replica (or this one) made it.
type Change struct {
	Kind    string
	AgentID string // ChangeAgent
	// ClientID is set for ChangeAgent when the agents row itself changed ("" otherwise:
	// a credential or a verdict changed). A handler that caches by client id treats ""
	// as "client id = AgentID", which is how registration creates every agent.
	ClientID  string
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
