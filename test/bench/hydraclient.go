package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// registerHydraClient registers, through Ory Hydra's admin API, the client equivalent
// to the Lanyard bench agent: client_credentials only, the bench scope, JWT access
// tokens, and private_key_jwt with an ES256 key or client_secret_basic.
//
// Hydra's issuer (and so the token endpoint it advertises, which client assertions
// must name as their audience) is https, as Hydra requires outside development mode;
// requests go to the same path over plain HTTP on loopback, as they would behind a
// TLS-terminating proxy.
func registerHydraClient(ctx context.Context, hc *http.Client, o options) (*registration, error) {
	base := strings.TrimSuffix(o.url, "/")
	var disc struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := hydraJSON(ctx, hc, http.MethodGet, base+"/.well-known/openid-configuration", nil, http.StatusOK, &disc); err != nil {
		return nil, fmt.Errorf("hydra discovery: %w", err)
	}
	if err := requireLoopback(disc.TokenEndpoint); err != nil {
		return nil, fmt.Errorf("hydra's token endpoint: %w", err)
	}
	te, err := url.Parse(disc.TokenEndpoint)
	if err != nil {
		return nil, fmt.Errorf("hydra's token endpoint: %w", err)
	}

	suffix := make([]byte, 4)
	rand.Read(suffix)
	req := map[string]any{
		"client_name":           "bench-" + hex.EncodeToString(suffix),
		"grant_types":           []string{"client_credentials"},
		"response_types":        []string{"token"},
		"access_token_strategy": "jwt",
	}
	if o.scope != "" {
		req["scope"] = o.scope
	}
	reg := &registration{server: "hydra", tokenURL: base + te.Path, audience: disc.TokenEndpoint}
	switch o.auth {
	case authClientSecretBasic:
		secret := make([]byte, 32)
		rand.Read(secret)
		reg.secret = hex.EncodeToString(secret)
		req["token_endpoint_auth_method"] = "client_secret_basic"
		req["client_secret"] = reg.secret
	default:
		key, pub, err := newES256Key()
		if err != nil {
			return nil, err
		}
		reg.key = key
		req["token_endpoint_auth_method"] = "private_key_jwt"
		req["token_endpoint_auth_signing_alg"] = "ES256"
		req["jwks"] = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{*pub}}
	}
	var created struct {
		ClientID string `json:"client_id"`
	}
	if err := hydraJSON(ctx, hc, http.MethodPost, strings.TrimSuffix(o.hydraAdmin, "/")+"/admin/clients", req, http.StatusCreated, &created); err != nil {
		return nil, fmt.Errorf("hydra: create client: %w", err)
	}
	if created.ClientID == "" {
		return nil, fmt.Errorf("hydra: create client: no client_id in the answer")
	}
	reg.clientID = created.ClientID
	return reg, nil
}

// hydraJSON sends body (if any) as JSON and decodes a wantStatus answer into out.
func hydraJSON(ctx context.Context, hc *http.Client, method, u string, body any, wantStatus int, out any) error {
	if err := requireLoopback(u); err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != wantStatus {
		return fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, bytes.TrimSpace(b[:min(len(b), 512)]))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}
