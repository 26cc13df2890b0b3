// Package oidctest is an in-process OpenID provider shaped like Microsoft Entra ID, for
// tests of the web UI's single sign-on. It serves discovery, JWKS, an authorization
// endpoint that approves at once as the current user, and a token endpoint that redeems
// codes (client secret, redirect URI and PKCE S256 checked) for RS256 ID tokens carrying
// Entra's claims: tid, oid, preferred_username, groups and roles.
//
// Paths follow Entra's v2.0 layout under the tenant:
// <URL>/<tenant>/v2.0/.well-known/openid-configuration,
// <URL>/<tenant>/oauth2/v2.0/authorize, …/token and <URL>/<tenant>/discovery/v2.0/keys.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// User is who the provider signs in next.
type User struct {
	ObjectID string // oid; also the sub
	Name     string
	Username string // preferred_username
	Groups   []string
	Roles    []string
	// GroupsOverage replaces groups with Entra's _claim_names overage marker.
	GroupsOverage bool
	// TenantID overrides the provider's tid (a user from another tenant).
	TenantID string
}

// Provider is a running test provider.
type Provider struct {
	// Issuer is the issuer URL (Entra v2.0 form).
	Issuer       string
	TenantID     string
	ClientID     string
	ClientSecret string

	t     testing.TB
	srv   *httptest.Server
	key   *rsa.PrivateKey
	kid   string
	mu    sync.Mutex
	user  User
	codes map[string]grant
	// RedirectURIs are the registered redirect URIs; an authorization request for
	// another is refused.
	redirectURIs []string
	// Logins counts completed authorizations.
	logins int
}

type grant struct {
	user        User
	clientID    string
	redirectURI string
	nonce       string
	challenge   string
	expires     time.Time
}

// New starts a provider that knows one client with the given redirect URI.
func New(t testing.TB, redirectURI string) *Provider {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{t: t, key: key, kid: "test-key-1", codes: map[string]grant{}, redirectURIs: []string{redirectURI},
		TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", ClientID: "6731de76-14a6-49ae-97bc-6eba6914391e",
		ClientSecret: random()}
	mux := http.NewServeMux()
	base := "/" + p.TenantID
	mux.HandleFunc("GET "+base+"/v2.0/.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET "+base+"/discovery/v2.0/keys", p.jwks)
	mux.HandleFunc("GET "+base+"/oauth2/v2.0/authorize", p.authorize)
	mux.HandleFunc("POST "+base+"/oauth2/v2.0/token", p.token)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	p.Issuer = p.srv.URL + base + "/v2.0"
	return p
}

// SetUser chooses who the next sign-in is.
func (p *Provider) SetUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = u
}

// Logins is the number of authorizations approved so far.
func (p *Provider) Logins() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logins
}

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	base := p.srv.URL + "/" + p.TenantID
	writeJSON(w, 200, map[string]any{
		"issuer":                                p.Issuer,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: "RS256", Use: "sig"}}})
}

// authorize approves at once: it checks the request as Entra would, then redirects back
// with a code.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	if q.Get("client_id") != p.ClientID || !slices.Contains(p.redirectURIs, redirect) {
		http.Error(w, "AADSTS50011: unknown client or redirect URI", http.StatusBadRequest)
		return
	}
	fail := func(code, desc string) {
		u, _ := url.Parse(redirect)
		v := url.Values{"error": {code}, "error_description": {desc}, "state": {q.Get("state")}}
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only code")
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		fail("invalid_request", "PKCE S256 is required")
		return
	case q.Get("state") == "" || q.Get("nonce") == "":
		fail("invalid_request", "state and nonce are required")
		return
	}
	p.mu.Lock()
	code := random()
	p.codes[code] = grant{user: p.user, clientID: p.ClientID, redirectURI: redirect, nonce: q.Get("nonce"),
		challenge: q.Get("code_challenge"), expires: time.Now().Add(time.Minute)}
	p.logins++
	p.mu.Unlock()
	u, _ := url.Parse(redirect)
	u.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", err.Error())
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	} else {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	if id != p.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(p.ClientSecret)) != 1 {
		oauthError(w, "invalid_client", "client authentication failed")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		oauthError(w, "unsupported_grant_type", "")
		return
	}
	p.mu.Lock()
	g, ok := p.codes[r.PostForm.Get("code")]
	delete(p.codes, r.PostForm.Get("code")) // single use
	p.mu.Unlock()
	if !ok || time.Now().After(g.expires) || g.redirectURI != r.PostForm.Get("redirect_uri") {
		oauthError(w, "invalid_grant", "unknown, used or expired code, or another redirect_uri")
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		oauthError(w, "invalid_grant", "PKCE verification failed")
		return
	}
	tid := p.TenantID
	if g.user.TenantID != "" {
		tid = g.user.TenantID
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.Issuer, "aud": p.ClientID, "sub": g.user.ObjectID, "oid": g.user.ObjectID, "tid": tid,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "nonce": g.nonce, "ver": "2.0",
		"name": g.user.Name, "preferred_username": g.user.Username,
	}
	if g.user.GroupsOverage {
		claims["_claim_names"] = map[string]string{"groups": "src1"}
	} else if g.user.Groups != nil {
		claims["groups"] = g.user.Groups
	}
	if g.user.Roles != nil {
		claims["roles"] = g.user.Roles
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", p.kid))
	if err != nil {
		oauthError(w, "server_error", err.Error())
		return
	}
	idt, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		oauthError(w, "server_error", err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"access_token": random(), "token_type": "Bearer", "expires_in": 3600, "id_token": idt, "scope": "openid profile email"})
}

func oauthError(w http.ResponseWriter, code, desc string) {
	status := http.StatusBadRequest
	if code == "invalid_client" {
		status = http.StatusUnauthorized
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
