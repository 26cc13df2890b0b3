package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
)

// RotationStatus returns the fleet's rotation compliance, the signing keys' status and
// the unfinished rotations (GET /v1/rotation), as the server's JSON.
func (c *Client) RotationStatus(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.doJSON(ctx, "GET", "/v1/rotation", nil, nil, &out)
	return out, err
}

// AgentRotation returns an agent's credential rotation status (GET /v1/agents/{id}/rotation).
func (c *Client) AgentRotation(ctx context.Context, id string) (json.RawMessage, error) {
	if id == "" {
		return nil, fmt.Errorf("client: agent id is empty")
	}
	var out json.RawMessage
	err := c.doJSON(ctx, "GET", "/v1/agents/"+url.PathEscape(id)+"/rotation", nil, nil, &out)
	return out, err
}

// SetAgentRotation sets an agent's rotation schedule (PUT /v1/agents/{id}/rotation), or
// with interval "" removes its override (DELETE) so the server's default applies.
func (c *Client) SetAgentRotation(ctx context.Context, id, interval, grace string) (json.RawMessage, error) {
	if id == "" {
		return nil, fmt.Errorf("client: agent id is empty")
	}
	var out json.RawMessage
	path := "/v1/agents/" + url.PathEscape(id) + "/rotation"
	if interval == "" {
		return out, c.doJSON(ctx, "DELETE", path, nil, nil, &out)
	}
	body := struct {
		Interval string `json:"interval"`
		Grace    string `json:"grace,omitempty"`
	}{interval, grace}
	return out, c.doJSON(ctx, "PUT", path, nil, body, &out)
}

// RotateSigningKey starts a rotation of the signing key of alg (POST
// /v1/signing-keys/rotate). Unless immediate, the new key is published first and
// activated by the server's scheduler after the publish-ahead period.
func (c *Client) RotateSigningKey(ctx context.Context, alg string, immediate bool) (json.RawMessage, error) {
	body := struct {
		Alg       string `json:"alg"`
		Immediate bool   `json:"immediate"`
	}{alg, immediate}
	var out json.RawMessage
	return out, c.doJSON(ctx, "POST", "/v1/signing-keys/rotate", nil, body, &out)
}
