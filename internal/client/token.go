package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWTBearerAssertionType is the client_assertion_type of RFC 7523 client authentication.
const JWTBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// DefaultAssertionLifetime is the lifetime RequestToken gives its client assertions.
const DefaultAssertionLifetime = 60 * time.Second

// MaxAssertionLifetime is the longest assertion lifetime Lanyard accepts; SignAssertion
// refuses to sign a longer one rather than produce an assertion the server rejects.
const MaxAssertionLifetime = 5 * time.Minute

// Discovery is the part of the server's OpenID Provider / RFC 8414 metadata this client
// uses.
type Discovery struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint,omitempty"`
	RevocationEndpoint                string   `json:"revocation_endpoint,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported,omitempty"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the metadata and keeps the bytes in Raw.
func (d *Discovery) UnmarshalJSON(b []byte) error {
	type plain Discovery
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*d = Discovery(v)
	d.Raw = rawCopy(b)
	return nil
}

// Discover fetches /.well-known/openid-configuration from the client's base URL. It
// never sends the admin token. It fails if the metadata lacks an issuer or a token
// endpoint.
func (c *Client) Discover(ctx context.Context) (*Discovery, error) {
	u := c.endpoint("/.well-known/openid-configuration", nil)
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, fmt.Errorf("client: discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: discovery: %w", err)
	}
	defer resp.Body.Close()
	data, err := readBody(resp)
	if err != nil {
		return nil, fmt.Errorf("client: discovery: read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("client: discovery at %s: %w", u, decodeProblem(resp, data))
	}
	var d Discovery
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("client: discovery at %s: decode: %w", u, err)
	}
	if d.Issuer == "" || d.TokenEndpoint == "" {
		return nil, fmt.Errorf("client: discovery at %s: metadata has no issuer or token_endpoint", u)
	}
	return &d, nil
}

// TokenRequest asks for an access token with the client_credentials grant.
//
// Client authentication is private_key_jwt (RFC 7523) when Key is set, else HTTP Basic
// with ClientSecret (client_secret_basic). Exactly one of them must be given.
type TokenRequest struct {
	// TokenURL is the token endpoint. Empty: discovered from the client's base URL.
	TokenURL string
	// ClientID is the agent's client_id.
	ClientID string
	// Key is the agent's private signing key (with kid and, ideally, alg).
	Key *jose.JSONWebKey
	// ClientSecret is the agent's secret, for client_secret agents.
	ClientSecret string
	// Scopes are requested as one space-separated scope parameter.
	Scopes []string
	// Resources are sent as repeated resource parameters (RFC 8707).
	Resources []string
	// Audience is the assertion's aud. Empty: the issuer when TokenURL was discovered
	// (Lanyard accepts its issuer or its token URL), else TokenURL.
	Audience string
	// AssertionLifetime defaults to DefaultAssertionLifetime.
	AssertionLifetime time.Duration
}

// TokenResponse is a successful RFC 6749 §5.1 token response.
type TokenResponse struct {
	AccessToken     string `json:"access_token"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in,omitempty"`
	Scope           string `json:"scope,omitempty"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the response and keeps the bytes in Raw.
func (t *TokenResponse) UnmarshalJSON(b []byte) error {
	type plain TokenResponse
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*t = TokenResponse(v)
	t.Raw = rawCopy(b)
	return nil
}

// OAuthError is an RFC 6749 §5.2 error from the token endpoint.
type OAuthError struct {
	StatusCode  int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	URI         string `json:"error_uri,omitempty"`
}

// Error renders "token endpoint answered 401: invalid_client: <description>".
func (e *OAuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token endpoint answered %d", e.StatusCode)
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	return b.String()
}

// RequestToken obtains an access token for an agent with the client_credentials grant.
// Errors from the token endpoint are returned as *OAuthError.
func (c *Client) RequestToken(ctx context.Context, tr TokenRequest) (*TokenResponse, error) {
	if tr.ClientID == "" {
		return nil, errors.New("client: token request: client id is empty")
	}
	if (tr.Key == nil) == (tr.ClientSecret == "") {
		return nil, errors.New("client: token request: give exactly one of a private key or a client secret")
	}
	if tr.TokenURL == "" {
		d, err := c.Discover(ctx)
		if err != nil {
			return nil, err
		}
		tr.TokenURL = d.TokenEndpoint
		if tr.Audience == "" {
			tr.Audience = d.Issuer
		}
	}
	if tr.Audience == "" {
		tr.Audience = tr.TokenURL
	}

	form := url.Values{}
	form.Set("grant_type", "client_credentials")
	form.Set("client_id", tr.ClientID)
	if len(tr.Scopes) > 0 {
		form.Set("scope", strings.Join(tr.Scopes, " "))
	}
	for _, r := range tr.Resources {
		form.Add("resource", r)
	}
	if tr.Key != nil {
		lifetime := tr.AssertionLifetime
		if lifetime == 0 {
			lifetime = DefaultAssertionLifetime
		}
		a, err := SignAssertion(tr.Key, tr.ClientID, tr.Audience, time.Now(), lifetime)
		if err != nil {
			return nil, err
		}
		form.Set("client_assertion_type", JWTBearerAssertionType)
		form.Set("client_assertion", a)
	}

	req, err := http.NewRequestWithContext(ctx, "POST", tr.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("client: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if tr.Key == nil {
		// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(tr.ClientID), url.QueryEscape(tr.ClientSecret))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: token request to %s: %w", tr.TokenURL, err)
	}
	defer resp.Body.Close()
	data, err := readBody(resp)
	if err != nil {
		return nil, fmt.Errorf("client: token request: read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		oe := &OAuthError{}
		if !isJSON(resp.Header.Get("Content-Type")) || json.Unmarshal(data, oe) != nil || oe.Code == "" {
			oe = &OAuthError{Description: snippet(data)}
		}
		oe.StatusCode = resp.StatusCode
		return nil, oe
	}
	var out TokenResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("client: token request: decode response: %w", err)
	}
	if out.AccessToken == "" {
		return nil, errors.New("client: token request: response has no access_token")
	}
	return &out, nil
}

// AssertionSigner signs RFC 7523 client assertions with one private key. Build it once
// and call Sign many times (the load generator does). It is safe for concurrent use.
type AssertionSigner struct {
	signer jose.Signer
	alg    jose.SignatureAlgorithm
}

// NewAssertionSigner prepares a signer for key, which must be a private EC (P-256 or
// P-384) or RSA key. The algorithm is key.Algorithm when set (ES256, ES384, RS256 or
// PS256, and it must fit the key), else ES256/ES384 by curve or RS256 for RSA. The kid
// header is key.KeyID.
func NewAssertionSigner(key *jose.JSONWebKey) (*AssertionSigner, error) {
	if key == nil || key.Key == nil {
		return nil, errors.New("client: assertion key is empty")
	}
	if key.IsPublic() {
		return nil, errors.New("client: assertion key is a public key; a private key is needed to sign")
	}
	alg, err := assertionAlg(key)
	if err != nil {
		return nil, err
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("client: assertion signer: %w", err)
	}
	return &AssertionSigner{signer: s, alg: alg}, nil
}

// Algorithm returns the JWS algorithm the signer uses.
func (s *AssertionSigner) Algorithm() string { return string(s.alg) }

// Sign returns a compact JWS client assertion: iss = sub = clientID, aud = audience,
// iat = now, exp = now + lifetime (0 < lifetime <= MaxAssertionLifetime) and a random,
// unique jti.
func (s *AssertionSigner) Sign(clientID, audience string, now time.Time, lifetime time.Duration) (string, error) {
	if clientID == "" || audience == "" {
		return "", errors.New("client: assertion needs a client id and an audience")
	}
	if lifetime <= 0 || lifetime > MaxAssertionLifetime {
		return "", fmt.Errorf("client: assertion lifetime %s is outside (0, %s]", lifetime, MaxAssertionLifetime)
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("client: assertion jti: %w", err)
	}
	claims := jwt.Claims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: jwt.Audience{audience},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(lifetime)),
		ID:       base64.RawURLEncoding.EncodeToString(jti[:]),
	}
	out, err := jwt.Signed(s.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("client: sign assertion: %w", err)
	}
	return out, nil
}

// SignAssertion signs one client assertion with key; see NewAssertionSigner and
// AssertionSigner.Sign for the rules.
func SignAssertion(key *jose.JSONWebKey, clientID, audience string, now time.Time, lifetime time.Duration) (string, error) {
	s, err := NewAssertionSigner(key)
	if err != nil {
		return "", err
	}
	return s.Sign(clientID, audience, now, lifetime)
}

// assertionAlg picks and checks the JWS algorithm for key.
func assertionAlg(key *jose.JSONWebKey) (jose.SignatureAlgorithm, error) {
	switch k := key.Key.(type) {
	case *ecdsa.PrivateKey:
		want := jose.SignatureAlgorithm("")
		switch k.Curve {
		case elliptic.P256():
			want = jose.ES256
		case elliptic.P384():
			want = jose.ES384
		default:
			return "", fmt.Errorf("client: EC key on curve %s is not supported (use P-256)", k.Curve.Params().Name)
		}
		if key.Algorithm != "" && key.Algorithm != string(want) {
			return "", fmt.Errorf("client: key says alg %s but is an EC %s key (%s)", key.Algorithm, k.Curve.Params().Name, want)
		}
		return want, nil
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("client: RSA key of %d bits is too short (at least 2048)", k.N.BitLen())
		}
		switch key.Algorithm {
		case "", string(jose.RS256):
			return jose.RS256, nil
		case string(jose.PS256):
			return jose.PS256, nil
		default:
			return "", fmt.Errorf("client: key says alg %s; an RSA key signs RS256 or PS256", key.Algorithm)
		}
	default:
		return "", fmt.Errorf("client: %T keys are not supported for client assertions (use EC P-256 or RSA)", key.Key)
	}
}
