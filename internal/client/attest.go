package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// AgentAuth authenticates an agent at the attestation endpoints, as at the token
// endpoint: a private key (private_key_jwt) or a client secret.
type AgentAuth struct {
	ClientID     string
	Key          *jose.JSONWebKey
	ClientSecret string
}

// Check is one attestation check's outcome.
type Check struct {
	Name     string `json:"name"`
	Outcome  string `json:"outcome"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// AttestationResult is a verdict from POST /v1/attestations.
type AttestationResult struct {
	ID           string            `json:"id"`
	AgentID      string            `json:"agent_id"`
	Status       string            `json:"status"`
	Host         string            `json:"host"`
	IssuedAt     time.Time         `json:"issued_at"`
	ExpiresAt    time.Time         `json:"expires_at"`
	Measurements map[string]string `json:"measurements"`
	Checks       []Check           `json:"checks"`
	Token        string            `json:"token,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// agentPost posts body (with the agent's authentication members added) to path and
// decodes a 2xx answer into out; /v1 problems come back as *Problem.
func (c *Client) agentPost(ctx context.Context, auth AgentAuth, path string, body map[string]any, out any) ([]byte, error) {
	if body == nil {
		body = map[string]any{}
	}
	body["client_id"] = auth.ClientID
	if auth.Key != nil {
		a, err := SignAssertion(auth.Key, auth.ClientID, c.endpoint(path, nil), time.Now(), DefaultAssertionLifetime)
		if err != nil {
			return nil, err
		}
		body["client_assertion_type"] = JWTBearerAssertionType
		body["client_assertion"] = a
	} else if auth.ClientSecret == "" {
		return nil, errors.New("client: give the agent's private key or client secret")
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(path, nil), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if auth.Key == nil {
		req.SetBasicAuth(auth.ClientID, auth.ClientSecret)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := readBody(resp)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, decodeProblem(resp, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("client: POST %s: decode response: %w", path, err)
	}
	return data, nil
}

// Challenge gets a single-use attestation nonce for the agent.
func (c *Client) Challenge(ctx context.Context, auth AgentAuth) (nonce string, expiresAt time.Time, err error) {
	var out struct {
		Nonce     string    `json:"nonce"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if _, err := c.agentPost(ctx, auth, "/v1/attestations/challenge", nil, &out); err != nil {
		return "", time.Time{}, err
	}
	return out.Nonce, out.ExpiresAt, nil
}

// Attest posts evidence (nonce, measurements, tpm, sigstore_bundles members) and
// returns the verdict. A contraindicated verdict is a result, not an error.
func (c *Client) Attest(ctx context.Context, auth AgentAuth, evidence map[string]any) (*AttestationResult, error) {
	var out AttestationResult
	raw, err := c.agentPost(ctx, auth, "/v1/attestations", evidence, &out)
	if err != nil {
		return nil, err
	}
	out.Raw = raw
	return &out, nil
}
