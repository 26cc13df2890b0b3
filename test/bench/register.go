package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/client"
)

// registration is the client the generator loads a server with: who it is, how it
// authenticates, and where its token requests go.
type registration struct {
	server   string // "lanyard" or "hydra"
	clientID string
	agentID  string           // Lanyard only
	key      *jose.JSONWebKey // private_key_jwt: the private key
	secret   string           // client_secret_basic
	tokenURL string           // where token requests are sent
	audience string           // the aud of client assertions
}

// authHeader is the request header line of client_secret_basic (RFC 6749 §2.3.1: id
// and secret form-urlencoded, then Basic), or "" for private_key_jwt.
func (r *registration) authHeader() string {
	if r.secret == "" {
		return ""
	}
	cred := url.QueryEscape(r.clientID) + ":" + url.QueryEscape(r.secret)
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(cred)) + "\r\n"
}

func (r *registration) agentAuth() client.AgentAuth {
	return client.AgentAuth{ClientID: r.clientID, Key: r.key, ClientSecret: r.secret}
}

// registerLanyardAgent discovers the Lanyard server's token endpoint and registers a
// fresh agent authenticating with o.auth (and attests it once with -attested).
func registerLanyardAgent(ctx context.Context, c *client.Client, o options) (*registration, error) {
	disc, err := c.Discover(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireLoopback(disc.TokenEndpoint); err != nil {
		return nil, fmt.Errorf("discovered token endpoint: %w", err)
	}
	attested := o.attested || o.mode == "attest"
	key, agent, secret, err := registerAgent(ctx, c, o.scope, attested, o.auth == authClientSecretBasic)
	if err != nil {
		return nil, err
	}
	reg := &registration{server: "lanyard", clientID: agent.ClientID, agentID: agent.ID, key: key, secret: secret,
		tokenURL: disc.TokenEndpoint, audience: disc.Issuer}
	if attested {
		if err := attestOnce(ctx, c, reg.agentAuth()); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// tokenBody returns the form body of one token request without client authentication
// (client_secret_basic sends it in a header).
func tokenBodyPrefix(scope string) string {
	b := "grant_type=client_credentials"
	if scope != "" {
		b += "&scope=" + url.QueryEscape(scope)
	}
	return b
}

// tokenBodies returns n token request bodies: each with its own pre-signed assertion
// (unique jti) for private_key_jwt, or n times the same body for client_secret_basic.
func tokenBodies(ctx context.Context, reg *registration, scope string, n int) ([][]byte, error) {
	if reg.secret == "" {
		return presign(ctx, reg.key, reg.clientID, reg.audience, scope, n)
	}
	body := []byte(tokenBodyPrefix(scope))
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = body
	}
	return bodies, nil
}

// checkToken makes one token request the way the run will and checks that it is
// answered with an ES256-signed JWT access token, so that both servers are compared
// doing the same work.
func checkToken(tgt target, reg *registration, scope string, timeout time.Duration) error {
	bodies, err := tokenBodies(context.Background(), reg, scope, 1)
	if err != nil {
		return err
	}
	rc := newRawClient(tgt, timeout)
	rc.full = true
	defer rc.close()
	status, body, err := rc.post(bodies[0])
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%d %s", status, bytes.TrimSpace(body))
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		return fmt.Errorf("token response: %w", err)
	}
	alg, err := jwsAlg(tok.AccessToken)
	if err != nil {
		return fmt.Errorf("access token: %w", err)
	}
	if alg != "ES256" {
		return fmt.Errorf("access token signed with %s, want ES256", alg)
	}
	return nil
}

// jwsAlg returns the alg of a compact JWS's protected header.
func jwsAlg(token string) (string, error) {
	h, _, ok := strings.Cut(token, ".")
	if !ok || strings.Count(token, ".") != 2 {
		return "", errors.New("not a compact JWS (is the server issuing opaque tokens?)")
	}
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", fmt.Errorf("JWS header: %w", err)
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return "", fmt.Errorf("JWS header: %w", err)
	}
	return hdr.Alg, nil
}
