package client

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/url"
	"strconv"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Risk levels, agent states and credential types as the API spells them.
const (
	RiskLow      = "low"
	RiskMedium   = "medium"
	RiskHigh     = "high"
	RiskCritical = "critical"

	StatusPending        = "pending"
	StatusActive         = "active"
	StatusSuspended      = "suspended"
	StatusRevoked        = "revoked"
	StatusDecommissioned = "decommissioned"

	CredentialPrivateKeyJWT = "private_key_jwt"
	CredentialClientSecret  = "client_secret"
	CredentialFederated     = "federated"
)

// Duration is a time.Duration that travels as a Go duration string ("5m", "10m0s").
type Duration time.Duration

// MarshalJSON writes the duration in time.Duration.String form.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a Go duration string. A JSON number is taken as whole seconds,
// for servers that chose to send one.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs int64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration: want a string like \"5m\", got %s", b)
		}
		*d = Duration(time.Duration(secs) * time.Second)
		return nil
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// String returns the duration in time.Duration form.
func (d Duration) String() string { return time.Duration(d).String() }

// CredentialSpec is the credential part of a registration: either a private_key_jwt
// with the agent's public JWK set, or a client_secret that the server generates.
type CredentialSpec struct {
	Type string              `json:"type"`
	JWKS *jose.JSONWebKeySet `json:"jwks,omitempty"`
	// Generate asks the server to generate a private_key_jwt key pair and keep it in
	// its secrets backend (Vault); the private key is returned once.
	Generate bool `json:"generate,omitempty"`
	// The fields of a federated credential (Type CredentialFederated).
	FederatedCredentialRequest
}

// RegisterAgentRequest is the body of POST /v1/agents. Zero-valued optional fields are
// omitted, so the server applies its defaults.
type RegisterAgentRequest struct {
	Name       string         `json:"name"`
	Namespace  string         `json:"namespace"`
	Owner      string         `json:"owner,omitempty"`
	Purpose    string         `json:"purpose,omitempty"`
	RiskLevel  string         `json:"risk_level,omitempty"`
	Pending    bool           `json:"pending,omitempty"`
	Credential CredentialSpec `json:"credential"`
	// TokenAlg is the JWS algorithm of the agent's access tokens: "ES256" or "RS256".
	TokenAlg         string    `json:"token_alg,omitempty"`
	AllowedScopes    []string  `json:"allowed_scopes,omitempty"`
	AllowedResources []string  `json:"allowed_resources,omitempty"`
	MaxTokenTTL      *Duration `json:"max_token_ttl,omitempty"`
	AttestationTTL   *Duration `json:"attestation_ttl,omitempty"`
	CanIntrospect    bool      `json:"can_introspect,omitempty"`
	// EntraFederation lets the agent get RS256 tokens for api://AzureADTokenExchange.
	EntraFederation bool `json:"entra_federation,omitempty"`
	// Reference holds the reference measurements, passed through verbatim.
	Reference json.RawMessage `json:"reference,omitempty"`
}

// AgentCredential describes one credential of an agent (never its secret material).
type AgentCredential struct {
	ID        string     `json:"id"`
	Type      string     `json:"type"`
	State     string     `json:"state"` // "active" or "retiring"
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	KIDs      []string   `json:"kids,omitempty"`
	// Federated credentials only.
	Issuer           string   `json:"issuer,omitempty"`
	Subject          string   `json:"subject,omitempty"`
	Audience         string   `json:"audience,omitempty"`
	AllowedClientIDs []string `json:"allowed_client_ids,omitempty"`
	RequireAppToken  bool     `json:"require_app_token,omitempty"`
}

// Agent is a registered agent as the API shows it.
type Agent struct {
	ID               string            `json:"id"`
	ClientID         string            `json:"client_id"`
	Name             string            `json:"name"`
	Namespace        string            `json:"namespace"`
	Owner            string            `json:"owner"`
	Purpose          string            `json:"purpose"`
	RiskLevel        string            `json:"risk_level"`
	Status           string            `json:"status"`
	StatusReason     string            `json:"status_reason,omitempty"`
	TokenAlg         string            `json:"token_alg"`
	CredentialType   string            `json:"credential_type"`
	Credentials      []AgentCredential `json:"credentials"`
	Reference        json.RawMessage   `json:"reference,omitempty"`
	AllowedScopes    []string          `json:"allowed_scopes"`
	AllowedResources []string          `json:"allowed_resources"`
	MaxTokenTTL      Duration          `json:"max_token_ttl"`
	AttestationTTL   Duration          `json:"attestation_ttl"`
	CanIntrospect    bool              `json:"can_introspect"`
	EntraFederation  bool              `json:"entra_federation"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`

	// Raw is the agent exactly as the server sent it (not marshalled).
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes an agent and keeps the bytes in Raw.
func (a *Agent) UnmarshalJSON(b []byte) error {
	type plain Agent
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*a = Agent(p)
	a.Raw = rawCopy(b)
	return nil
}

// RegisterAgentResponse is the answer to POST /v1/agents: the agent, plus the client
// secret for client_secret agents. The secret is shown this once; the server keeps only
// a hash.
type RegisterAgentResponse struct {
	Agent
	ClientSecret string `json:"client_secret,omitempty"`
	// PrivateKey is the generated private key (PKCS#8 PEM), shown once.
	PrivateKey string `json:"private_key,omitempty"`
}

// UnmarshalJSON decodes the flat response (agent fields and client_secret side by side).
func (r *RegisterAgentResponse) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &r.Agent); err != nil {
		return err
	}
	var s struct {
		ClientSecret string `json:"client_secret"`
		PrivateKey   string `json:"private_key"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	r.ClientSecret, r.PrivateKey = s.ClientSecret, s.PrivateKey
	return nil
}

// UpdateAgentRequest is the body of PATCH /v1/agents/{id}, a JSON merge patch: nil
// fields are left unchanged.
type UpdateAgentRequest struct {
	Owner            *string         `json:"owner,omitempty"`
	Purpose          *string         `json:"purpose,omitempty"`
	RiskLevel        *string         `json:"risk_level,omitempty"`
	AllowedScopes    *[]string       `json:"allowed_scopes,omitempty"`
	AllowedResources *[]string       `json:"allowed_resources,omitempty"`
	MaxTokenTTL      *Duration       `json:"max_token_ttl,omitempty"`
	AttestationTTL   *Duration       `json:"attestation_ttl,omitempty"`
	TokenAlg         *string         `json:"token_alg,omitempty"`
	CanIntrospect    *bool           `json:"can_introspect,omitempty"`
	Reference        json.RawMessage `json:"reference,omitempty"`
}

// ListAgentsOptions filters GET /v1/agents. Empty fields are not sent.
type ListAgentsOptions struct {
	Namespace string
	Owner     string
	Status    string
	// Limit is the page size; 0 lets the server choose.
	Limit int
	// Cursor is the NextCursor of the previous page.
	Cursor string
}

func (o ListAgentsOptions) query() url.Values {
	q := url.Values{}
	setIf(q, "namespace", o.Namespace)
	setIf(q, "owner", o.Owner)
	setIf(q, "status", o.Status)
	setIf(q, "cursor", o.Cursor)
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	return q
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

// AgentPage is one page of GET /v1/agents. NextCursor is empty on the last page.
type AgentPage struct {
	Items      []Agent `json:"items"`
	NextCursor string  `json:"next_cursor,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the page and keeps the bytes in Raw.
func (p *AgentPage) UnmarshalJSON(b []byte) error {
	type plain AgentPage
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = AgentPage(v)
	p.Raw = rawCopy(b)
	return nil
}

// RotateCredentialRequest is the body of POST /v1/agents/{id}/credentials/rotate.
// JWKS is required for private_key_jwt agents and must be nil for client_secret agents.
// Grace, when set, is how long the old credential stays valid; otherwise the server's
// default applies.
type RotateCredentialRequest struct {
	JWKS  *jose.JSONWebKeySet `json:"jwks,omitempty"`
	Grace *Duration           `json:"grace,omitempty"`
}

// RotateCredentialResponse is the answer to a rotation. ClientSecret is set for
// client_secret agents only and is shown this once.
type RotateCredentialResponse struct {
	Agent        Agent     `json:"agent"`
	ClientSecret string    `json:"client_secret,omitempty"`
	GraceUntil   time.Time `json:"grace_until"`
	// PrivateKey is a newly generated private key (PKCS#8 PEM), shown once.
	PrivateKey string `json:"private_key,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the response and keeps the bytes in Raw.
func (r *RotateCredentialResponse) UnmarshalJSON(b []byte) error {
	type plain RotateCredentialResponse
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = RotateCredentialResponse(v)
	r.Raw = rawCopy(b)
	return nil
}

// Lifecycle actions accepted by Transition.
const (
	ActionActivate     = "activate"
	ActionSuspend      = "suspend"
	ActionResume       = "resume"
	ActionRevoke       = "revoke"
	ActionDecommission = "decommission"
)

// RegisterAgent registers an agent (POST /v1/agents).
func (c *Client) RegisterAgent(ctx context.Context, req RegisterAgentRequest) (*RegisterAgentResponse, error) {
	var out RegisterAgentResponse
	if err := c.doJSON(ctx, "POST", "/v1/agents", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetAgent fetches one agent by id (GET /v1/agents/{id}).
func (c *Client) GetAgent(ctx context.Context, id string) (*Agent, error) {
	if id == "" {
		return nil, fmt.Errorf("client: agent id is empty")
	}
	var out Agent
	if err := c.doJSON(ctx, "GET", "/v1/agents/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAgents fetches one page of agents (GET /v1/agents).
func (c *Client) ListAgents(ctx context.Context, opts ListAgentsOptions) (*AgentPage, error) {
	var out AgentPage
	if err := c.doJSON(ctx, "GET", "/v1/agents", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllAgents iterates over every agent matching opts, following cursors page by page
// (opts.Limit is the page size). It stops at the first error, which it yields once.
func (c *Client) AllAgents(ctx context.Context, opts ListAgentsOptions) iter.Seq2[Agent, error] {
	return func(yield func(Agent, error) bool) {
		for {
			page, err := c.ListAgents(ctx, opts)
			if err != nil {
				yield(Agent{}, err)
				return
			}
			for _, a := range page.Items {
				if !yield(a, nil) {
					return
				}
			}
			if page.NextCursor == "" || page.NextCursor == opts.Cursor {
				return
			}
			opts.Cursor = page.NextCursor
		}
	}
}

// UpdateAgent applies a merge patch to an agent (PATCH /v1/agents/{id}).
func (c *Client) UpdateAgent(ctx context.Context, id string, req UpdateAgentRequest) (*Agent, error) {
	if id == "" {
		return nil, fmt.Errorf("client: agent id is empty")
	}
	var out Agent
	if err := c.doJSON(ctx, "PATCH", "/v1/agents/"+url.PathEscape(id), nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Transition performs a lifecycle action (one of the Action constants) on an agent,
// with an optional reason that the server records and audits. An invalid transition
// comes back as a *Problem with status 409.
func (c *Client) Transition(ctx context.Context, id, action, reason string) (*Agent, error) {
	switch action {
	case ActionActivate, ActionSuspend, ActionResume, ActionRevoke, ActionDecommission:
	default:
		return nil, fmt.Errorf("client: unknown lifecycle action %q", action)
	}
	if id == "" {
		return nil, fmt.Errorf("client: agent id is empty")
	}
	body := struct {
		Reason string `json:"reason,omitempty"`
	}{reason}
	var out Agent
	if err := c.doJSON(ctx, "POST", "/v1/agents/"+url.PathEscape(id)+"/"+action, nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateCredential rotates an agent's credential (POST /v1/agents/{id}/credentials/rotate).
func (c *Client) RotateCredential(ctx context.Context, id string, req RotateCredentialRequest) (*RotateCredentialResponse, error) {
	if id == "" {
		return nil, fmt.Errorf("client: agent id is empty")
	}
	var out RotateCredentialResponse
	if err := c.doJSON(ctx, "POST", "/v1/agents/"+url.PathEscape(id)+"/credentials/rotate", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
