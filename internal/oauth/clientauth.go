package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/protocol"
	"github.com/lanyardhq/lanyard/internal/store"
)

// MaxAssertionLifetime is the longest exp − iat a client assertion may have. Short-lived
// assertions keep the replay cache small and a stolen assertion nearly worthless.
const MaxAssertionLifetime = 5 * time.Minute

// maxAssertionBytes bounds a client assertion before any parsing.
const maxAssertionBytes = 8 << 10

// authResult is an authenticated client and how it authenticated.
type authResult struct {
	client *client
	method string
	// jti of the client assertion (private_key_jwt only), for the audit trail.
	jti string
	// federated is the federated credential that authenticated the client, if any.
	federated *store.Credential
}

// Authenticate identifies and authenticates the client of r exactly as the token
// endpoint does (private_key_jwt, client_secret_basic or client_secret_post), accepting
// an assertion whose aud is the issuer or any of endpointURLs. It does not check the
// agent's status. Later endpoints (attestation) use it so that every endpoint
// authenticates agents the same way.
func (p *Provider) Authenticate(ctx context.Context, r *http.Request, form url.Values, endpointURLs ...string) (*store.Agent, string, error) {
	res, err := p.authenticate(ctx, r, form, endpointURLs)
	if err != nil {
		return nil, "", err
	}
	return &res.client.agent, res.method, nil
}

func (p *Provider) authenticate(ctx context.Context, r *http.Request, form url.Values, endpointURLs []string) (*authResult, *protocol.Error) {
	for _, name := range []string{"client_id", "client_secret", "client_assertion", "client_assertion_type"} {
		if len(form[name]) > 1 {
			return nil, protocol.InvalidRequest("parameter %s is repeated", name).WithReason("repeated_parameter")
		}
	}
	user, pass, hasBasic := r.BasicAuth()
	hasAssertion := form.Get("client_assertion") != "" || form.Get("client_assertion_type") != ""
	hasPost := form.Get("client_secret") != ""
	n := 0
	for _, b := range []bool{hasBasic, hasAssertion, hasPost} {
		if b {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, protocol.InvalidRequest("more than one client authentication method was used; use exactly one").WithReason("multiple_auth_methods")
	case hasAssertion:
		return p.authenticateAssertion(ctx, form, endpointURLs)
	case hasBasic:
		// RFC 6749 §2.3.1: the id and secret are form-urlencoded inside Basic.
		id, err1 := url.QueryUnescape(user)
		secret, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return nil, protocol.InvalidClient("HTTP Basic credentials are not form-urlencoded").WithReason("malformed_basic")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, protocol.InvalidRequest("client_id in the body differs from the HTTP Basic user").WithReason("client_id_mismatch")
		}
		return p.authenticateSecret(ctx, id, secret, protocol.AuthClientSecretBasic)
	case hasPost:
		return p.authenticateSecret(ctx, form.Get("client_id"), form.Get("client_secret"), protocol.AuthClientSecretPost)
	}
	return nil, protocol.InvalidClient("no client authentication: send a client_assertion (private_key_jwt) or HTTP Basic client credentials").WithReason("no_client_auth")
}

func (p *Provider) lookup(ctx context.Context, clientID string) (*client, *protocol.Error) {
	if clientID == "" {
		return nil, protocol.InvalidClient("client_id is missing").WithReason("no_client_id")
	}
	// An id no agent can have never reaches the database (PostgreSQL refuses NUL and
	// invalid UTF-8 with an error, which would turn a bad request into a 500).
	if len(clientID) > 128 || !utf8.ValidString(clientID) || strings.IndexByte(clientID, 0) >= 0 {
		return nil, protocol.InvalidClient("unknown client").WithReason("unknown_client")
	}
	c, err := p.clients.get(ctx, clientID)
	if errors.Is(err, errUnknownClient) {
		return nil, protocol.InvalidClient("unknown client").WithReason("unknown_client")
	}
	if err != nil {
		return nil, protocol.ServerError(err)
	}
	if c.agent.Status == store.StatusDecommissioned {
		return nil, protocol.InvalidClient("agent is decommissioned; its credentials were destroyed").WithReason("agent_decommissioned")
	}
	return c, nil
}

func (p *Provider) authenticateSecret(ctx context.Context, clientID, secret, method string) (*authResult, *protocol.Error) {
	c, perr := p.lookup(ctx, clientID)
	if perr != nil {
		return nil, perr
	}
	if c.agent.CredentialType != store.CredentialClientSecret {
		return nil, protocol.InvalidClient("client authenticates with %s, not a client secret", c.agent.CredentialType).WithReason("wrong_auth_method")
	}
	ok := false
	for _, h := range c.secrets {
		// Compare against every usable hash; each comparison is constant-time.
		if p.hasher.Equal(secret, h) {
			ok = true
		}
	}
	if !ok {
		return nil, protocol.InvalidClient("client secret does not match").WithReason("bad_secret")
	}
	return &authResult{client: c, method: method}, nil
}

// assertionClaims are the claims of an RFC 7523 client assertion.
type assertionClaims struct {
	Issuer   string               `json:"iss"`
	Subject  string               `json:"sub"`
	Audience josejwt.Audience     `json:"aud"`
	Expiry   *josejwt.NumericDate `json:"exp"`
	NotAfter *josejwt.NumericDate `json:"nbf"`
	IssuedAt *josejwt.NumericDate `json:"iat"`
	ID       string               `json:"jti"`
}

func (p *Provider) authenticateAssertion(ctx context.Context, form url.Values, endpointURLs []string) (*authResult, *protocol.Error) {
	if t := form.Get("client_assertion_type"); t != protocol.AssertionTypeJWTBearer {
		return nil, protocol.InvalidClient("client_assertion_type must be %s", protocol.AssertionTypeJWTBearer).WithReason("bad_assertion_type")
	}
	raw := form.Get("client_assertion")
	if raw == "" {
		return nil, protocol.InvalidClient("client_assertion is missing").WithReason("no_assertion")
	}
	if len(raw) > maxAssertionBytes {
		return nil, protocol.InvalidClient("client assertion is larger than %d bytes", maxAssertionBytes).WithReason("assertion_too_large")
	}
	// Read the header ourselves first so a refused algorithm gets a precise message
	// before the signature library sees the token.
	alg, kid, perr := assertionHeader(raw)
	if perr != nil {
		return nil, perr
	}
	jws, err := jose.ParseSignedCompact(raw, lifecycle.AssertionAlgs)
	if err != nil {
		return nil, protocol.InvalidClient("client assertion is not a valid signed JWT").WithReason("malformed_assertion").WithCause(err)
	}
	// The claims are read before the signature is checked because iss names the key;
	// nothing read here is trusted until jws.Verify succeeds below. The payload is
	// decoded once, with encoding/json.
	var claims assertionClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
		return nil, protocol.InvalidClient("client assertion claims are malformed").WithReason("malformed_assertion").WithCause(err)
	}
	if isURL(claims.Issuer) || (p.deps.Federation != nil && p.deps.Federation.Trusted(claims.Issuer)) {
		// A token from an external issuer: federated credentials (federation.go).
		return p.authenticateFederated(ctx, form, raw, claims.Issuer)
	}
	if claims.Issuer == "" || claims.Subject != claims.Issuer {
		return nil, protocol.InvalidClient("client assertion iss and sub must both be the client_id").WithReason("assertion_iss_sub")
	}
	if fid := form.Get("client_id"); fid != "" && fid != claims.Subject {
		return nil, protocol.InvalidClient("client_id does not match the client assertion's sub").WithReason("client_id_mismatch")
	}
	c, perr := p.lookup(ctx, claims.Subject)
	if perr != nil {
		return nil, perr
	}
	if c.agent.CredentialType != store.CredentialPrivateKeyJWT {
		return nil, protocol.InvalidClient("client authenticates with %s, not private_key_jwt", c.agent.CredentialType).WithReason("wrong_auth_method")
	}
	key, perr := selectKey(c.keys, kid, alg)
	if perr != nil {
		return nil, perr
	}
	if _, err := jws.Verify(key.Key); err != nil {
		return nil, protocol.InvalidClient("client assertion signature does not verify with registered key %q", key.KeyID).WithReason("bad_signature").WithCause(err)
	}

	now := p.now()
	leeway := p.opts.Leeway
	switch {
	case claims.Expiry == nil:
		return nil, protocol.InvalidClient("client assertion has no exp").WithReason("assertion_no_exp")
	case now.After(claims.Expiry.Time().Add(leeway)):
		return nil, protocol.InvalidClient("client assertion expired at %s", claims.Expiry.Time().UTC().Format(time.RFC3339)).WithReason("assertion_expired")
	case claims.NotAfter != nil && claims.NotAfter.Time().After(now.Add(leeway)):
		return nil, protocol.InvalidClient("client assertion is not valid before %s", claims.NotAfter.Time().UTC().Format(time.RFC3339)).WithReason("assertion_not_yet_valid")
	case claims.IssuedAt != nil && claims.IssuedAt.Time().After(now.Add(leeway)):
		return nil, protocol.InvalidClient("client assertion iat is in the future").WithReason("assertion_iat_future")
	}
	start := now
	if claims.IssuedAt != nil {
		start = claims.IssuedAt.Time()
	}
	if life := claims.Expiry.Time().Sub(start); life > MaxAssertionLifetime {
		return nil, protocol.InvalidClient("client assertion lifetime %s exceeds %s", life.Round(time.Second), MaxAssertionLifetime).WithReason("assertion_lifetime")
	}
	if !audienceOK(claims.Audience, p.opts.Issuer, endpointURLs) {
		want := append([]string{p.opts.Issuer}, endpointURLs...)
		return nil, protocol.InvalidClient("client assertion aud must be one of %s", strings.Join(want, ", ")).WithReason("assertion_audience")
	}
	if claims.ID == "" {
		return nil, protocol.InvalidClient("client assertion has no jti").WithReason("assertion_no_jti")
	}
	if len(claims.ID) > 256 {
		return nil, protocol.InvalidClient("client assertion jti is longer than 256 bytes").WithReason("assertion_jti_too_long")
	}
	iat := start
	if claims.IssuedAt == nil {
		// Without iat, the assertion may be as old as its maximum lifetime allows.
		iat = claims.Expiry.Time().Add(-MaxAssertionLifetime)
	}
	if p.replay.Seen(c.agent.ClientID+"\x00"+claims.ID, iat, claims.Expiry.Time().Add(leeway), now) {
		return nil, protocol.InvalidClient("client assertion jti was already used (or the assertion predates the server's start); sign a fresh assertion").WithReason("assertion_replayed")
	}
	return &authResult{client: c, method: protocol.AuthPrivateKeyJWT, jti: claims.ID}, nil
}

// assertionHeader decodes the JOSE header of a compact JWS and checks its alg against
// the allow-list.
func assertionHeader(raw string) (alg, kid string, _ *protocol.Error) {
	dot := strings.IndexByte(raw, '.')
	if dot <= 0 || strings.Count(raw, ".") != 2 {
		return "", "", protocol.InvalidClient("client assertion is not a compact JWS (three dot-separated parts)").WithReason("malformed_assertion")
	}
	b, err := base64.RawURLEncoding.DecodeString(raw[:dot])
	if err != nil {
		return "", "", protocol.InvalidClient("client assertion header is not base64url").WithReason("malformed_assertion")
	}
	var h struct {
		Alg  string `json:"alg"`
		Kid  string `json:"kid"`
		Crit []any  `json:"crit"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", "", protocol.InvalidClient("client assertion header is not a JSON object").WithReason("malformed_assertion")
	}
	if h.Crit != nil {
		return "", "", protocol.InvalidClient("client assertion header has crit extensions, which are not supported").WithReason("assertion_crit")
	}
	if !slices.Contains(lifecycle.AssertionAlgs, jose.SignatureAlgorithm(h.Alg)) {
		return "", "", protocol.InvalidClient("client assertion alg %q is not allowed; use ES256, RS256 or PS256", clip(h.Alg)).WithReason("assertion_alg")
	}
	return h.Alg, h.Kid, nil
}

func selectKey(keys []jose.JSONWebKey, kid, alg string) (*jose.JSONWebKey, *protocol.Error) {
	if len(keys) == 0 {
		return nil, protocol.InvalidClient("client has no usable key").WithReason("no_key")
	}
	if kid != "" {
		for i := range keys {
			if keys[i].KeyID == kid {
				if !lifecycle.KeyAllows(&keys[i], alg) {
					return nil, protocol.InvalidClient("registered key %q does not allow alg %s", kid, alg).WithReason("key_alg_mismatch")
				}
				return &keys[i], nil
			}
		}
		return nil, protocol.InvalidClient("client assertion kid %q matches no registered key", clip(kid)).WithReason("unknown_kid")
	}
	// Without kid, exactly one registered key may fit the alg; guessing among several
	// would let an attacker choose the key.
	var found *jose.JSONWebKey
	for i := range keys {
		if lifecycle.KeyAllows(&keys[i], alg) {
			if found != nil {
				return nil, protocol.InvalidClient("client assertion has no kid and several registered keys allow %s", alg).WithReason("ambiguous_key")
			}
			found = &keys[i]
		}
	}
	if found == nil {
		return nil, protocol.InvalidClient("no registered key allows alg %s", alg).WithReason("key_alg_mismatch")
	}
	return found, nil
}

func audienceOK(aud josejwt.Audience, issuer string, endpointURLs []string) bool {
	for _, a := range aud {
		if a == issuer || slices.Contains(endpointURLs, a) {
			return true
		}
	}
	return false
}

// clip bounds caller-chosen text echoed into an error description and the audit log.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
