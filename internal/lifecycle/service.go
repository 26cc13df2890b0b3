// Package lifecycle registers agents and governs their lives: the state machine
// (pending → active ⇄ suspended → revoked, anything → decommissioned), their credentials
// and the rotation of those credentials. Every change is recorded in the audit log before
// the call returns.
//
// The HTTP API, the CLI (through the API) and the web UI all go through Service, so the
// rules live in one place.
package lifecycle

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Store is what the service needs from the database.
type Store interface {
	store.Agents
	store.Credentials
}

// Auditor records an audit event durably before returning.
type Auditor interface {
	Record(ctx context.Context, e audit.Event) error
}

// Options tune the service. Zero values take the documented defaults.
type Options struct {
	// DefaultTokenTTL is an agent's max_token_ttl when it sets none. Default 5m.
	DefaultTokenTTL time.Duration
	// MaxTokenTTL is the largest max_token_ttl an agent may set. Default 1h.
	MaxTokenTTL time.Duration
	// DefaultAttestationTTL is an agent's attestation_ttl when it sets none. Default 10m.
	DefaultAttestationTTL time.Duration
	// CredentialGrace is how long a rotated-out credential keeps working when the
	// rotation request names no grace. Default 24h.
	CredentialGrace time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// AKEnrolments, when set, makes registration and patching refuse a reference.tpm
	// whose attestation key has not completed enrolment. Nil accepts any AK.
	AKEnrolments AKEnrolments
	// Secrets, if set, receives every credential Lanyard generates (see AgentSecretPath);
	// without it client secrets are only shown once and generated keys are refused.
	Secrets secrets.Backend
	// Hook, if set, is called at named points of a credential rotation (see
	// AdvanceCredentialRotation); an error stops the rotation there, as a crash would.
	// Tests inject faults with it.
	Hook func(ctx context.Context, point string) error
}

// Service implements agent registration and lifecycle.
type Service struct {
	st     Store
	audit  Auditor
	hasher *SecretHasher
	opts   Options
	trust  IssuerTrust // nil: no federation issuer is trusted

	mu        sync.RWMutex
	listeners []func(a *store.Agent)
}

// New returns a Service.
func New(st Store, aud Auditor, hasher *SecretHasher, opts Options) *Service {
	if opts.DefaultTokenTTL == 0 {
		opts.DefaultTokenTTL = 5 * time.Minute
	}
	if opts.MaxTokenTTL == 0 {
		opts.MaxTokenTTL = time.Hour
	}
	if opts.DefaultAttestationTTL == 0 {
		opts.DefaultAttestationTTL = 10 * time.Minute
	}
	if opts.CredentialGrace == 0 {
		opts.CredentialGrace = 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{st: st, audit: aud, hasher: hasher, opts: opts}
}

// OnChange registers fn to be called after every committed change to an agent or its
// credentials (caches use it to drop stale entries).
func (s *Service) OnChange(fn func(a *store.Agent)) {
	s.mu.Lock()
	s.listeners = append(s.listeners, fn)
	s.mu.Unlock()
}

func (s *Service) changed(a *store.Agent) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, fn := range s.listeners {
		fn(a)
	}
}

// Agent is an agent with its credentials and decoded reference measurements.
type Agent struct {
	store.Agent
	Credentials []store.Credential
	Reference   *Reference
}

// CredentialRequest chooses how a new agent authenticates.
type CredentialRequest struct {
	// Type is private_key_jwt or client_secret.
	Type string `json:"type"`
	// JWKS is the agent's public key set (private_key_jwt only).
	JWKS json.RawMessage `json:"jwks,omitempty"`
	// Generate asks Lanyard to generate the private_key_jwt key pair and write it to the
	// secrets backend (instead of registering the agent's JWKS).
	Generate bool `json:"generate,omitempty"`
	// The fields of a federated credential (see FederatedCredentialRequest).
	FederatedCredentialRequest
}

// RegisterRequest is the body of POST /v1/agents.
type RegisterRequest struct {
	Name             string             `json:"name"`
	Namespace        string             `json:"namespace"`
	Owner            string             `json:"owner"`
	Purpose          string             `json:"purpose"`
	RiskLevel        string             `json:"risk_level"`
	Pending          bool               `json:"pending"`
	Credential       *CredentialRequest `json:"credential"`
	TokenAlg         string             `json:"token_alg"`
	Reference        *Reference         `json:"reference"`
	AllowedScopes    []string           `json:"allowed_scopes"`
	AllowedResources []string           `json:"allowed_resources"`
	MaxTokenTTL      string             `json:"max_token_ttl"`
	AttestationTTL   string             `json:"attestation_ttl"`
	CanIntrospect    bool               `json:"can_introspect"`
	// EntraFederation lets the agent get RS256 tokens for api://AzureADTokenExchange.
	EntraFederation bool `json:"entra_federation"`
}

// Registered is the result of a registration. ClientSecret is set, once, for
// client_secret agents: Lanyard keeps only its hash. PrivateKeyPEM is set, once, for
// generated private_key_jwt keys. Both are also in the secrets backend at
// SecretPath when the service has one.
type Registered struct {
	Agent         *Agent
	ClientSecret  string
	PrivateKeyPEM string
}

// ClientSecretPrefix starts every agent client secret.
const ClientSecretPrefix = "lys_"

// Register validates req and creates the agent with its first credential.
func (s *Service) Register(ctx context.Context, actor string, req RegisterRequest) (*Registered, error) {
	v := &validator{}
	v.label("name", req.Name)
	v.label("namespace", req.Namespace)
	v.text("owner", req.Owner, true, 128)
	v.text("purpose", req.Purpose, false, 1024)
	if req.RiskLevel == "" {
		req.RiskLevel = "medium"
	}
	v.risk("risk_level", req.RiskLevel)
	alg := v.tokenAlg("token_alg", req.TokenAlg)
	v.scopes("allowed_scopes", req.AllowedScopes)
	v.resources("allowed_resources", req.AllowedResources)
	ttl := v.duration("max_token_ttl", req.MaxTokenTTL, s.opts.DefaultTokenTTL, time.Minute, s.opts.MaxTokenTTL)
	attTTL := v.duration("attestation_ttl", req.AttestationTTL, s.opts.DefaultAttestationTTL, time.Minute, 24*time.Hour)
	v.reference("reference", req.Reference)
	if err := s.checkAKEnrolled(ctx, v, "reference", req.Reference); err != nil {
		return nil, err
	}

	now := s.opts.Now().UTC()
	id := newID("agt_")
	cred := &store.Credential{ID: newID("crd_"), AgentID: id, State: store.CredentialActive, CreatedAt: now}
	var secret string
	switch {
	case req.Credential == nil:
		v.add("credential", "is required")
	case req.Credential.Type == store.CredentialPrivateKeyJWT && req.Credential.Generate:
		cred.Type = store.CredentialPrivateKeyJWT
		if len(req.Credential.JWKS) > 0 && string(req.Credential.JWKS) != "null" {
			v.add("credential.jwks", "must not be set with generate: Lanyard generates the key pair")
		}
		if s.opts.Secrets == nil {
			v.add("credential.generate", "needs a secrets backend to deliver the private key")
		}
	case req.Credential.Type == store.CredentialPrivateKeyJWT:
		cred.Type = store.CredentialPrivateKeyJWT
		if len(req.Credential.JWKS) == 0 || string(req.Credential.JWKS) == "null" {
			v.add("credential.jwks", "is required for private_key_jwt")
		} else if set, err := ParseJWKS(req.Credential.JWKS); err != nil {
			v.add("credential.jwks", "%v", err)
		} else {
			cred.JWKS, _ = json.Marshal(set)
		}
	case req.Credential.Type == store.CredentialClientSecret:
		cred.Type = store.CredentialClientSecret
		if len(req.Credential.JWKS) > 0 {
			v.add("credential.jwks", "must not be set for client_secret")
		}
		if req.Credential.Generate {
			v.add("credential.generate", "applies to private_key_jwt only (client secrets are always generated)")
		}
	case req.Credential.Type == store.CredentialFederated:
		cred.Type = store.CredentialFederated
		if len(req.Credential.JWKS) > 0 {
			v.add("credential.jwks", "must not be set for federated")
		}
		v.federated("credential", &req.Credential.FederatedCredentialRequest, s.trust, cred)
	default:
		v.add("credential.type", "must be private_key_jwt, client_secret or federated")
	}
	if req.Credential != nil && req.Credential.Type != store.CredentialFederated && !req.Credential.FederatedCredentialRequest.isZero() {
		v.add("credential", "issuer, subject, audience, allowed_client_ids and require_app_token are for federated credentials only")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	var material map[string]string
	switch {
	case s.opts.Secrets != nil && (cred.Type == store.CredentialClientSecret || req.Credential.Generate):
		var err error
		if material, err = newMaterial(&store.Agent{ClientID: id}, cred.Type, cred.ID, ""); err != nil {
			return nil, err
		}
		if err := s.fillCredential(material, cred); err != nil {
			return nil, err
		}
		secret = material[dataSecret]
	case cred.Type == store.CredentialClientSecret:
		var err error
		if secret, err = NewSecret(ClientSecretPrefix); err != nil {
			return nil, err
		}
		cred.SecretHash = s.hasher.Hash(secret)
	}

	status := store.StatusActive
	if req.Pending {
		status = store.StatusPending
	}
	a := &store.Agent{
		ID: id, ClientID: id,
		Name: req.Name, Namespace: req.Namespace, Owner: req.Owner, Purpose: req.Purpose,
		RiskLevel: req.RiskLevel, Status: status, CredentialType: cred.Type, TokenAlg: alg,
		AllowedScopes: nonNil(req.AllowedScopes), AllowedResources: nonNil(req.AllowedResources),
		MaxTokenTTLSeconds: int64(ttl / time.Second), AttestationTTLSeconds: int64(attTTL / time.Second),
		CanIntrospect: req.CanIntrospect, Generation: 1, CreatedAt: now, UpdatedAt: now,
		EntraFederation: req.EntraFederation,
	}
	if !req.Reference.IsZero() {
		a.Reference, _ = json.Marshal(req.Reference)
	}
	if material != nil {
		// The secret is written first: the database never names a secret that is not there.
		if err := s.storeNewSecret(ctx, a, cred, material); err != nil {
			return nil, err
		}
	}
	if err := s.st.CreateAgent(ctx, a, cred); err != nil {
		if material != nil && errors.Is(err, store.ErrConflict) {
			s.restoreAfterLostRace(ctx, a, cred.SecretPath)
		}
		if errors.Is(err, store.ErrConflict) {
			return nil, &ConflictError{Detail: fmt.Sprintf("an agent named %q already exists in namespace %q", req.Name, req.Namespace), Err: err}
		}
		return nil, fmt.Errorf("lifecycle: register: %w", err)
	}
	regData := map[string]any{
		"name": a.Name, "owner": a.Owner, "status": a.Status, "credential_type": a.CredentialType,
		"allowed_scopes": []string(a.AllowedScopes), "allowed_resources": []string(a.AllowedResources),
	}
	if cred.SecretPath != "" {
		regData["secret_path"], regData["secret_version"] = cred.SecretPath, cred.SecretVersion
	}
	if err := s.record(ctx, actor, a, audit.Event{Type: "agent.registered", Data: regData}); err != nil {
		return nil, err
	}
	s.changed(a)
	return &Registered{Agent: &Agent{Agent: *a, Credentials: []store.Credential{*cred}, Reference: req.Reference},
		ClientSecret: secret, PrivateKeyPEM: generatedKeyPEM(material)}, nil
}

// Get returns the agent with its credentials.
func (s *Service) Get(ctx context.Context, id string) (*Agent, error) {
	a, err := s.st.GetAgent(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: agent %q: %w", id, err)
	}
	return s.withDetail(ctx, a)
}

func (s *Service) withDetail(ctx context.Context, a *store.Agent) (*Agent, error) {
	creds, err := s.st.ListCredentials(ctx, a.ID)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: credentials of %s: %w", a.ID, err)
	}
	ref, err := decodeReference(a.Reference)
	if err != nil {
		return nil, err
	}
	return &Agent{Agent: *a, Credentials: creds, Reference: ref}, nil
}

// List returns one page of agents and the cursor of the next page ("" on the last).
func (s *Service) List(ctx context.Context, f store.AgentFilter) ([]store.Agent, string, error) {
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 100
	}
	want := f.Limit
	f.Limit = want + 1 // one more tells whether a next page exists
	list, err := s.st.ListAgents(ctx, f)
	if err != nil {
		return nil, "", fmt.Errorf("lifecycle: list agents: %w", err)
	}
	next := ""
	if len(list) > want {
		list = list[:want]
		next = list[want-1].ID
	}
	return list, next, nil
}

// PatchRequest is the body of PATCH /v1/agents/{id}: absent fields stay unchanged.
type PatchRequest struct {
	Owner            *string    `json:"owner"`
	Purpose          *string    `json:"purpose"`
	RiskLevel        *string    `json:"risk_level"`
	AllowedScopes    *[]string  `json:"allowed_scopes"`
	AllowedResources *[]string  `json:"allowed_resources"`
	MaxTokenTTL      *string    `json:"max_token_ttl"`
	AttestationTTL   *string    `json:"attestation_ttl"`
	TokenAlg         *string    `json:"token_alg"`
	CanIntrospect    *bool      `json:"can_introspect"`
	Reference        *Reference `json:"reference"`
	EntraFederation  *bool      `json:"entra_federation"`
}

// Patch changes the agent's mutable fields. Decommissioned agents cannot change.
func (s *Service) Patch(ctx context.Context, actor, id string, req PatchRequest) (*Agent, error) {
	v := &validator{}
	changed := []string{}
	if req.Owner != nil {
		v.text("owner", *req.Owner, true, 128)
		changed = append(changed, "owner")
	}
	if req.Purpose != nil {
		v.text("purpose", *req.Purpose, false, 1024)
		changed = append(changed, "purpose")
	}
	if req.RiskLevel != nil {
		v.risk("risk_level", *req.RiskLevel)
		changed = append(changed, "risk_level")
	}
	if req.AllowedScopes != nil {
		v.scopes("allowed_scopes", *req.AllowedScopes)
		changed = append(changed, "allowed_scopes")
	}
	if req.AllowedResources != nil {
		v.resources("allowed_resources", *req.AllowedResources)
		changed = append(changed, "allowed_resources")
	}
	var ttl, attTTL time.Duration
	var alg string
	if req.MaxTokenTTL != nil {
		ttl = v.duration("max_token_ttl", *req.MaxTokenTTL, s.opts.DefaultTokenTTL, time.Minute, s.opts.MaxTokenTTL)
		changed = append(changed, "max_token_ttl")
	}
	if req.AttestationTTL != nil {
		attTTL = v.duration("attestation_ttl", *req.AttestationTTL, s.opts.DefaultAttestationTTL, time.Minute, 24*time.Hour)
		changed = append(changed, "attestation_ttl")
	}
	if req.TokenAlg != nil {
		alg = v.tokenAlg("token_alg", *req.TokenAlg)
		changed = append(changed, "token_alg")
	}
	if req.CanIntrospect != nil {
		changed = append(changed, "can_introspect")
	}
	if req.Reference != nil {
		v.reference("reference", req.Reference)
		if err := s.checkAKEnrolled(ctx, v, "reference", req.Reference); err != nil {
			return nil, err
		}
		changed = append(changed, "reference")
	}
	if req.EntraFederation != nil {
		changed = append(changed, "entra_federation")
	}
	if len(changed) == 0 {
		v.add("", "the request changes nothing")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	a, err := s.st.UpdateAgent(ctx, id, func(a *store.Agent) error {
		if a.Status == store.StatusDecommissioned {
			return &TransitionError{Action: "update", From: a.Status}
		}
		if req.Owner != nil {
			a.Owner = *req.Owner
		}
		if req.Purpose != nil {
			a.Purpose = *req.Purpose
		}
		if req.RiskLevel != nil {
			a.RiskLevel = *req.RiskLevel
		}
		if req.AllowedScopes != nil {
			a.AllowedScopes = nonNil(*req.AllowedScopes)
		}
		if req.AllowedResources != nil {
			a.AllowedResources = nonNil(*req.AllowedResources)
		}
		if req.MaxTokenTTL != nil {
			a.MaxTokenTTLSeconds = int64(ttl / time.Second)
		}
		if req.AttestationTTL != nil {
			a.AttestationTTLSeconds = int64(attTTL / time.Second)
		}
		if req.TokenAlg != nil {
			a.TokenAlg = alg
		}
		if req.CanIntrospect != nil {
			a.CanIntrospect = *req.CanIntrospect
		}
		if req.EntraFederation != nil {
			a.EntraFederation = *req.EntraFederation
		}
		if req.Reference != nil {
			if req.Reference.IsZero() {
				a.Reference = nil
			} else {
				a.Reference, _ = json.Marshal(req.Reference)
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("update", id, err)
	}
	if err := s.record(ctx, actor, a, audit.Event{Type: "agent.updated", Data: map[string]any{"fields": changed}}); err != nil {
		return nil, err
	}
	s.changed(a)
	return s.withDetail(ctx, a)
}

// Action is a lifecycle transition.
type Action string

// The lifecycle actions.
const (
	Activate     Action = "activate"
	Suspend      Action = "suspend"
	Resume       Action = "resume"
	Revoke       Action = "revoke"
	Decommission Action = "decommission"
)

// transitions maps each action to the states it may start from and the state it ends in.
var transitions = map[Action]struct {
	from []string
	to   string
	past string
}{
	Activate:     {[]string{store.StatusPending}, store.StatusActive, "activated"},
	Suspend:      {[]string{store.StatusActive}, store.StatusSuspended, "suspended"},
	Resume:       {[]string{store.StatusSuspended}, store.StatusActive, "resumed"},
	Revoke:       {[]string{store.StatusActive, store.StatusSuspended}, store.StatusRevoked, "revoked"},
	Decommission: {[]string{store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusRevoked}, store.StatusDecommissioned, "decommissioned"},
}

// ParseAction returns the action named s.
func ParseAction(s string) (Action, bool) {
	_, ok := transitions[Action(s)]
	return Action(s), ok
}

// TransitionError is an action the agent's current state does not allow (HTTP 409).
type TransitionError struct {
	Action string
	From   string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("lifecycle: cannot %s an agent that is %s", e.Action, e.From)
}

// Transition applies action to the agent. Suspending, revoking and decommissioning set
// TokensNotBefore, so every token issued until now fails introspection from this moment,
// and stays failed even if the agent is resumed later. Decommissioning destroys the
// agent's credentials; the record stays for the audit trail.
func (s *Service) Transition(ctx context.Context, actor, id string, action Action, reason string) (*Agent, error) {
	t, ok := transitions[action]
	if !ok {
		return nil, &ValidationError{Fields: []FieldError{{Field: "action", Detail: fmt.Sprintf("unknown action %q", action)}}}
	}
	v := &validator{}
	v.text("reason", reason, false, 1024)
	if err := v.err(); err != nil {
		return nil, err
	}
	now := s.opts.Now().UTC()
	var from string
	var creds []store.Credential
	if action == Decommission {
		// Read before the state change: these name the secrets to destroy after it.
		var err error
		if creds, err = s.st.ListCredentials(ctx, id); err != nil {
			return nil, s.wrap(string(action), id, err)
		}
	}
	a, err := s.st.UpdateAgent(ctx, id, func(a *store.Agent) error {
		from = a.Status
		allowed := false
		for _, f := range t.from {
			allowed = allowed || f == a.Status
		}
		if !allowed {
			return &TransitionError{Action: string(action), From: a.Status}
		}
		a.Status = t.to
		a.StatusReason = reason
		if action == Suspend || action == Revoke || action == Decommission {
			a.TokensNotBefore = &now
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap(string(action), id, err)
	}
	// The state change committed first: from here the agent gets no token and its tokens
	// fail introspection. Destroying credentials after it cannot leave a usable agent.
	if action == Decommission {
		if err := s.st.DeleteCredentials(ctx, id); err != nil {
			return nil, fmt.Errorf("lifecycle: destroy credentials of %s: %w", id, err)
		}
		s.destroySecrets(ctx, actor, a, creds)
	}
	if err := s.record(ctx, actor, a, audit.Event{Type: "agent." + t.past, Reason: reason,
		Data: map[string]any{"from": from, "to": t.to}}); err != nil {
		return nil, err
	}
	s.changed(a)
	return s.withDetail(ctx, a)
}

// RotateRequest is the body of POST /v1/agents/{id}/credentials/rotate.
type RotateRequest struct {
	// JWKS is the new public key set (private_key_jwt agents; required for them).
	JWKS json.RawMessage `json:"jwks,omitempty"`
	// Grace is how long the old credential keeps working, e.g. "24h"; "0s" ends it now.
	Grace string `json:"grace,omitempty"`
	// Reason is recorded in the audit log with the rotation.
	Reason string `json:"reason,omitempty"`
}

// Rotated is the result of a rotation. ClientSecret is set, once, for secret agents.
type Rotated struct {
	Agent        *Agent
	ClientSecret string
	GraceUntil   time.Time
	// PrivateKeyPEM is the new generated private key (shown once); RotationID names
	// the rotation record of a managed credential.
	PrivateKeyPEM string
	RotationID    string
}

// RotateCredential replaces the agent's active credential. The old one stays valid
// until GraceUntil so running agents can switch without an outage.
func (s *Service) RotateCredential(ctx context.Context, actor, id string, req RotateRequest) (*Rotated, error) {
	a, err := s.st.GetAgent(ctx, id)
	if err != nil {
		return nil, s.wrap("rotate credentials of", id, err)
	}
	if a.Status == store.StatusRevoked || a.Status == store.StatusDecommissioned {
		return nil, &TransitionError{Action: "rotate credentials of", From: a.Status}
	}
	if err := rotatable(a); err != nil {
		return nil, err
	}
	v := &validator{}
	grace := v.duration("grace", req.Grace, s.opts.CredentialGrace, 0, 30*24*time.Hour)
	v.text("reason", req.Reason, false, 1024)
	if _, ok := s.rotations(); ok && s.opts.Secrets != nil && v.err() == nil && len(req.JWKS) == 0 {
		if managed, err := s.hasManagedCredential(ctx, id, a.CredentialType); err != nil {
			return nil, err
		} else if managed {
			return s.rotateManaged(ctx, actor, id, req.Reason, grace)
		}
	}
	now := s.opts.Now().UTC()
	cred := &store.Credential{ID: newID("crd_"), AgentID: id, Type: a.CredentialType, State: store.CredentialActive, CreatedAt: now}
	var secret string
	switch a.CredentialType {
	case store.CredentialPrivateKeyJWT:
		if len(req.JWKS) == 0 || string(req.JWKS) == "null" {
			v.add("jwks", "is required to rotate a private_key_jwt credential")
		} else if set, err := ParseJWKS(req.JWKS); err != nil {
			v.add("jwks", "%v", err)
		} else {
			cred.JWKS, _ = json.Marshal(set)
		}
	case store.CredentialClientSecret:
		if len(req.JWKS) > 0 {
			v.add("jwks", "must not be set for a client_secret agent")
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if a.CredentialType == store.CredentialClientSecret {
		if secret, err = NewSecret(ClientSecretPrefix); err != nil {
			return nil, err
		}
		cred.SecretHash = s.hasher.Hash(secret)
	}
	until := now.Add(grace)
	if err := s.st.RotateCredential(ctx, id, cred, until); err != nil {
		return nil, s.wrap("rotate credentials of", id, err)
	}
	if err := s.record(ctx, actor, a, audit.Event{Type: "credential.rotated", Reason: req.Reason, Data: map[string]any{
		"credential_id": cred.ID, "type": cred.Type, "grace_until": until.Format(time.RFC3339),
	}}); err != nil {
		return nil, err
	}
	s.changed(a)
	detail, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &Rotated{Agent: detail, ClientSecret: secret, GraceUntil: until}, nil
}

// ConflictError is a request that collides with existing state (HTTP 409).
type ConflictError struct {
	Detail string
	Err    error
}

func (e *ConflictError) Error() string { return "lifecycle: " + e.Detail }
func (e *ConflictError) Unwrap() error { return e.Err }

func (s *Service) wrap(op, id string, err error) error {
	var te *TransitionError
	if errors.As(err, &te) {
		return te
	}
	return fmt.Errorf("lifecycle: %s agent %q: %w", op, id, err)
}

func (s *Service) record(ctx context.Context, actor string, a *store.Agent, e audit.Event) error {
	e.Actor = actor
	e.AgentID = a.ID
	e.Namespace = a.Namespace
	if e.Outcome == "" {
		e.Outcome = "success"
	}
	e.RequestID = requestid.From(ctx)
	if err := s.audit.Record(ctx, e); err != nil {
		return fmt.Errorf("lifecycle: audit %s: %w", e.Type, err)
	}
	return nil
}

// idEncoding keeps byte order in string order, so time-ordered ids sort by creation.
var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// newID returns prefix + 26 characters of a UUIDv7: time-ordered, 74 random bits.
func newID(prefix string) string {
	u := uuid.Must(uuid.NewV7())
	return prefix + strings.ToLower(idEncoding.EncodeToString(u[:]))
}

func nonNil(l []string) store.StringList {
	if l == nil {
		return store.StringList{}
	}
	return store.StringList(l)
}
