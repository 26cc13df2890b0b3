package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
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
	// clientIDs, when set, are the agents (all with key) requests rotate over.
	clientIDs     []string
	introspectURL string
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
	if o.clientIDsFile != "" {
		return existingAgents(o, disc)
	}
	attested := o.attested || o.mode == "attest"
	key, agent, secret, err := registerAgent(ctx, c, o.scope, attested, o.auth == authClientSecretBasic)
	if err != nil {
		return nil, err
	}
	reg := &registration{server: "lanyard", clientID: agent.ClientID, agentID: agent.ID, key: key, secret: secret,
		tokenURL: disc.TokenEndpoint, audience: disc.Issuer, introspectURL: disc.IntrospectionEndpoint}
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
		ids := reg.clientIDs
		if len(ids) == 0 {
			ids = []string{reg.clientID}
		}
		return presign(ctx, reg.key, ids, reg.audience, scope, n)
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

// existingAgents is the registration of -client-ids and -key: agents loaded by bench
// scale, all with the same key.
func existingAgents(o options, disc *client.Discovery) (*registration, error) {
	b, err := os.ReadFile(o.clientIDsFile)
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(string(b))
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s: no client ids", o.clientIDsFile)
	}
	kb, err := os.ReadFile(o.keyFile)
	if err != nil {
		return nil, err
	}
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(kb); err != nil {
		return nil, fmt.Errorf("%s: %w", o.keyFile, err)
	}
	if key.IsPublic() {
		return nil, fmt.Errorf("%s: a private key is needed", o.keyFile)
	}
	return &registration{server: "lanyard", clientID: ids[0], clientIDs: ids, key: &key,
		tokenURL: disc.TokenEndpoint, audience: disc.Issuer, introspectURL: disc.IntrospectionEndpoint}, nil
}

// introspectionTokens is how many distinct tokens an introspection run cycles over.
const introspectionTokens = 2000

// prepareIntrospection registers a resource server (a client_secret agent with
// can_introspect), issues up to introspectionTokens tokens to the agents of reg, and
// returns the introspection target and n request bodies cycling over those tokens.
func prepareIntrospection(ctx context.Context, c *client.Client, tokenTarget target, reg *registration, scope string, n int, timeout time.Duration) (target, [][]byte, error) {
	if reg.introspectURL == "" {
		return target{}, nil, errors.New("the server advertises no introspection_endpoint")
	}
	if err := requireLoopback(reg.introspectURL); err != nil {
		return target{}, nil, fmt.Errorf("introspection endpoint: %w", err)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	res, err := c.RegisterAgent(ctx, client.RegisterAgentRequest{
		Name: "bench-rs-" + hex.EncodeToString(suffix), Namespace: "bench", Owner: "bench",
		Purpose: "resource server of the introspection load test", RiskLevel: client.RiskLow,
		Credential: client.CredentialSpec{Type: client.CredentialClientSecret}, TokenAlg: "ES256", CanIntrospect: true,
	})
	if err != nil {
		return target{}, nil, fmt.Errorf("register the resource server: %w", err)
	}
	if res.Agent.Status == client.StatusPending {
		if _, err := c.Transition(ctx, res.Agent.ID, client.ActionActivate, "bench"); err != nil {
			return target{}, nil, fmt.Errorf("activate the resource server: %w", err)
		}
	}
	rs := &registration{clientID: res.Agent.ClientID, secret: res.ClientSecret}

	k := min(n, introspectionTokens)
	reqs, err := tokenBodies(ctx, reg, scope, k)
	if err != nil {
		return target{}, nil, err
	}
	tokens := make([][]byte, k)
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		firstErr error
		errOnce  sync.Once
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := newRawClient(tokenTarget, timeout)
			rc.full = true
			defer rc.close()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= k {
					return
				}
				status, body, err := rc.post(reqs[i])
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("%d %s", status, bytes.TrimSpace(body))
				}
				var tok struct {
					AccessToken string `json:"access_token"`
				}
				if err == nil {
					err = json.Unmarshal(body, &tok)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("issue a token to introspect: %w", err) })
					return
				}
				tokens[i] = []byte("token=" + url.QueryEscape(tok.AccessToken))
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return target{}, nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return target{}, nil, err
	}
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = tokens[i%k]
	}
	tgt := target{url: reg.introspectURL, contentType: "application/x-www-form-urlencoded", okStatus: http.StatusOK,
		okMarker: []byte(`"active":true`), header: rs.authHeader()}
	return tgt, bodies, nil
}
