package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"
)

// EntraAudience is the audience of tokens Entra ID exchanges (workload identity
// federation).
const EntraAudience = "api://AzureADTokenExchange"

// FederatedCredentialRequest names the external token that authenticates an agent: its
// iss, sub and one aud, compared exactly; optionally the azp/appid values accepted and
// whether an Entra app-only token (idtyp "app") is required.
type FederatedCredentialRequest struct {
	Issuer           string   `json:"issuer,omitempty"`
	Subject          string   `json:"subject,omitempty"`
	Audience         string   `json:"audience,omitempty"`
	AllowedClientIDs []string `json:"allowed_client_ids,omitempty"`
	RequireAppToken  bool     `json:"require_app_token,omitempty"`
}

// Federation is an agent's federation in both directions: the external tokens that
// authenticate it (Credentials) and what Entra ID must be told to trust its tokens
// (Issuer, Subject, Audience), enabled by EntraFederation.
type Federation struct {
	AgentID         string            `json:"agent_id"`
	Credentials     []AgentCredential `json:"credentials"`
	EntraFederation bool              `json:"entra_federation"`
	Issuer          string            `json:"issuer"`
	Subject         string            `json:"subject"`
	Audience        string            `json:"audience"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the view and keeps the bytes in Raw.
func (f *Federation) UnmarshalJSON(b []byte) error {
	type plain Federation
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Federation(v)
	f.Raw = rawCopy(b)
	return nil
}

// FederationIssuerRequest is the body of POST /v1/federation/issuers. Kind defaults to
// "entra" for Entra ID hosts and "oidc" otherwise; Algs to RS256.
type FederationIssuerRequest struct {
	Issuer  string   `json:"issuer"`
	Kind    string   `json:"kind,omitempty"`
	Algs    []string `json:"algs,omitempty"`
	JWKSURL string   `json:"jwks_url,omitempty"`
}

// FederationIssuer is a trusted external issuer and the state of its key cache.
type FederationIssuer struct {
	Issuer        string    `json:"issuer"`
	Kind          string    `json:"kind"`
	Algs          []string  `json:"algs"`
	JWKSURL       string    `json:"jwks_url,omitempty"`
	Source        string    `json:"source"`
	CreatedAt     time.Time `json:"created_at"`
	KeysFetchedAt time.Time `json:"keys_fetched_at"`
	Keys          int       `json:"keys"`
	LastError     string    `json:"last_error,omitempty"`
}

func agentPath(id, suffix string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("client: agent id is empty")
	}
	return "/v1/agents/" + url.PathEscape(id) + suffix, nil
}

// GetFederation fetches the agent's federation (GET /v1/agents/{id}/federation).
func (c *Client) GetFederation(ctx context.Context, id string) (*Federation, error) {
	p, err := agentPath(id, "/federation")
	if err != nil {
		return nil, err
	}
	var out Federation
	if err := c.doJSON(ctx, "GET", p, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddFederatedCredential adds a federated credential to the agent
// (POST /v1/agents/{id}/federation/credentials).
func (c *Client) AddFederatedCredential(ctx context.Context, id string, req FederatedCredentialRequest) (*Federation, error) {
	p, err := agentPath(id, "/federation/credentials")
	if err != nil {
		return nil, err
	}
	var out Federation
	if err := c.doJSON(ctx, "POST", p, nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveFederatedCredential removes one federated credential
// (DELETE /v1/agents/{id}/federation/credentials/{credential}).
func (c *Client) RemoveFederatedCredential(ctx context.Context, id, credentialID string) (*Federation, error) {
	if credentialID == "" {
		return nil, fmt.Errorf("client: credential id is empty")
	}
	p, err := agentPath(id, "/federation/credentials/"+url.PathEscape(credentialID))
	if err != nil {
		return nil, err
	}
	var out Federation
	if err := c.doJSON(ctx, "DELETE", p, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetEntraFederation turns the agent's outbound federation with Entra ID on or off
// (PATCH /v1/agents/{id} with entra_federation).
func (c *Client) SetEntraFederation(ctx context.Context, id string, on bool) (*Agent, error) {
	p, err := agentPath(id, "")
	if err != nil {
		return nil, err
	}
	body := struct {
		EntraFederation bool `json:"entra_federation"`
	}{on}
	var out Agent
	if err := c.doJSON(ctx, "PATCH", p, nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// FederationIssuers lists the trusted external issuers (GET /v1/federation/issuers).
func (c *Client) FederationIssuers(ctx context.Context) ([]FederationIssuer, error) {
	var out struct {
		Items []FederationIssuer `json:"items"`
	}
	if err := c.doJSON(ctx, "GET", "/v1/federation/issuers", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// AddFederationIssuer trusts an external issuer (POST /v1/federation/issuers).
func (c *Client) AddFederationIssuer(ctx context.Context, req FederationIssuerRequest) (*FederationIssuer, error) {
	var out FederationIssuer
	if err := c.doJSON(ctx, "POST", "/v1/federation/issuers", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveFederationIssuer stops trusting an issuer (DELETE /v1/federation/issuers?issuer=).
func (c *Client) RemoveFederationIssuer(ctx context.Context, issuer string) error {
	if issuer == "" {
		return fmt.Errorf("client: issuer is empty")
	}
	return c.doJSON(ctx, "DELETE", "/v1/federation/issuers", url.Values{"issuer": {issuer}}, nil, nil)
}
