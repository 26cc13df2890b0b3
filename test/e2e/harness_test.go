// Package e2e starts the real Lanyard server (the same wiring as `lanyard serve`) on a
// random loopback port, against SQLite and PostgreSQL, and drives it over HTTP with
// standard clients: golang.org/x/oauth2/clientcredentials for tokens and
// github.com/coreos/go-oidc/v3 for discovery and JWKS verification.
package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/server"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// env is one running server.
type env struct {
	t      *testing.T
	base   string
	admin  string
	client *http.Client
	// issuer is the server's issuer: base, except on a replica (which shares the
	// first server's issuer and listens elsewhere).
	issuer string
	cfg    config.Config
}

// forEachStore runs fn against a server on SQLite and one on PostgreSQL.
func forEachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, start(t, "")) })
	t.Run("postgres", func(t *testing.T) { fn(t, start(t, storetest.PostgresDSN(t))) })
}

// freePort returns a loopback port that was free a moment ago: the issuer URL must be
// known before the server starts.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func start(t *testing.T, dsn string) *env { t.Helper(); return startWith(t, dsn, nil) }

// startWith starts a server whose configuration mod may change first.
func startWith(t *testing.T, dsn string, mod func(*config.Config)) *env {
	t.Helper()
	addr := freePort(t)
	cfg := config.Defaults()
	cfg.Addr = addr
	cfg.Issuer = "http://" + addr
	cfg.DataDir = t.TempDir()
	cfg.DatabaseURL = dsn
	cfg.AdminToken = "test-admin-token-" + randString(24)
	cfg.ShutdownTimeout = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("start server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server run: %v", err)
		}
	})
	return &env{t: t, base: "http://" + cfg.Addr, issuer: cfg.Issuer, cfg: cfg, admin: cfg.AdminToken, client: &http.Client{Timeout: 10 * time.Second}}
}

// replica starts a second server on e's database, data directory (so the local secrets
// backend is shared, as Vault would be) and issuer: another replica behind the same
// load balancer.
func (e *env) replica(t *testing.T) *env {
	t.Helper()
	issuer := e.cfg.Issuer
	return startWith(t, e.cfg.DatabaseURL, func(c *config.Config) {
		c.Issuer, c.DataDir, c.AdminToken = issuer, e.cfg.DataDir, e.cfg.AdminToken
	})
}

func randString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// response is a decoded HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.body)
	}
	return m
}

func (e *env) do(req *http.Request) response {
	e.t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// api calls the admin API with a JSON body (nil for none).
func (e *env) api(method, path string, body any) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			j, _ := json.Marshal(b)
			rd = bytes.NewReader(j)
		}
	}
	req, _ := http.NewRequest(method, e.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return e.do(req)
}

// form posts a form to path, with optional HTTP Basic credentials.
func (e *env) form(path string, v url.Values, basicUser, basicPass string) response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	return e.do(req)
}

// agentKey is an agent's key pair.
type agentKey struct {
	priv jose.JSONWebKey
	pub  jose.JSONWebKey
	alg  jose.SignatureAlgorithm
}

func newKey(t *testing.T, alg jose.SignatureAlgorithm) agentKey {
	t.Helper()
	var priv any
	switch alg {
	case jose.ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	default:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	}
	jwk := jose.JSONWebKey{Key: priv, Algorithm: string(alg), Use: "sig"}
	tp, _ := jwk.Thumbprint(cryptoSHA256)
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return agentKey{priv: jwk, pub: jwk.Public(), alg: alg}
}

func (k agentKey) jwks() map[string]any {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.pub}})
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// assertion is a client assertion's claims; zero fields get sensible defaults.
type assertion struct {
	iss, sub, jti string
	aud           []string
	iat, exp      time.Time
	noIat         bool
}

func (k agentKey) sign(t *testing.T, a assertion) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.priv.KeyID))
	if err != nil {
		t.Fatal(err)
	}
	return signClaims(t, s, a)
}

func signClaims(t *testing.T, s jose.Signer, a assertion) string {
	t.Helper()
	now := time.Now()
	if a.iat.IsZero() {
		a.iat = now
	}
	if a.exp.IsZero() {
		a.exp = a.iat.Add(time.Minute)
	}
	if a.jti == "" {
		a.jti = randString(16)
	}
	if a.sub == "" {
		a.sub = a.iss
	}
	c := josejwt.Claims{Issuer: a.iss, Subject: a.sub, Audience: a.aud, Expiry: josejwt.NewNumericDate(a.exp), ID: a.jti}
	if !a.noIat {
		c.IssuedAt = josejwt.NewNumericDate(a.iat)
	}
	tok, err := josejwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// registered is an agent the test registered.
type registered struct {
	id, secret string
	key        agentKey
}

// registerJWT registers an ES256 private_key_jwt agent allowed scopes a,b and resource
// https://api.example.com.
func (e *env) registerJWT(t *testing.T, name string, extra map[string]any) registered {
	t.Helper()
	k := newKey(t, jose.ES256)
	body := map[string]any{
		"name": name, "namespace": "finance", "owner": "ap-platform", "purpose": "e2e",
		"risk_level":        "medium",
		"credential":        map[string]any{"type": "private_key_jwt", "jwks": k.jwks()},
		"allowed_scopes":    []string{"invoices:read", "erp:post"},
		"allowed_resources": []string{"https://erp.example.com", "https://api.example.com"},
	}
	for key, v := range extra {
		body[key] = v
	}
	r := e.api(http.MethodPost, "/v1/agents", body)
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	return registered{id: r.json(t)["id"].(string), key: k}
}

func (e *env) registerSecret(t *testing.T, name string) registered {
	t.Helper()
	r := e.api(http.MethodPost, "/v1/agents", map[string]any{
		"name": name, "namespace": "finance", "owner": "ap-platform",
		"credential":     map[string]any{"type": "client_secret"},
		"allowed_scopes": []string{"invoices:read"},
	})
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	m := r.json(t)
	return registered{id: m["id"].(string), secret: m["client_secret"].(string)}
}

// tokenJWT requests a token with a fresh assertion; extra form values are added.
func (e *env) tokenJWT(t *testing.T, a registered, extra url.Values) response {
	t.Helper()
	v := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {a.key.sign(t, assertion{iss: a.id, aud: []string{e.issuer + "/oauth2/token"}})},
	}
	for k, vs := range extra {
		v[k] = vs
	}
	return e.form("/oauth2/token", v, "", "")
}

// introspect asks, as admin, whether token is active.
func (e *env) introspect(t *testing.T, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+e.admin)
	r := e.do(req)
	if r.status != http.StatusOK {
		t.Fatalf("introspect: %d %s", r.status, r.body)
	}
	return r.json(t)
}

// wantOAuthError asserts an RFC 6749 §5.2 error response.
func wantOAuthError(t *testing.T, r response, status int, code, descContains string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	m := r.json(t)
	if m["error"] != code {
		t.Fatalf("error = %v, want %s; body %s", m["error"], code, r.body)
	}
	if d, _ := m["error_description"].(string); !strings.Contains(d, descContains) {
		t.Fatalf("error_description = %q, want it to contain %q", d, descContains)
	}
	if _, ok := m["access_token"]; ok {
		t.Fatalf("an error response carried a token: %s", r.body)
	}
}

// wantProblem asserts an RFC 9457 problem document and returns it.
func wantProblem(t *testing.T, r response, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	m := r.json(t)
	if int(m["status"].(float64)) != status || m["type"] == "" || m["title"] == "" {
		t.Fatalf("malformed problem document: %s", r.body)
	}
	return m
}

// fieldErrors returns the field names of a validation problem.
func fieldErrors(m map[string]any) []string {
	var out []string
	list, _ := m["errors"].([]any)
	for _, e := range list {
		out = append(out, e.(map[string]any)["field"].(string))
	}
	return out
}

// auditEvent is one item of GET /v1/audit.
type auditEvent struct {
	Seq     int64          `json:"seq"`
	Type    string         `json:"type"`
	Actor   string         `json:"actor"`
	AgentID string         `json:"agent_id"`
	Outcome string         `json:"outcome"`
	Reason  string         `json:"reason"`
	Data    map[string]any `json:"data"`
}

func (e *env) auditEvents(t *testing.T, query string) []auditEvent {
	t.Helper()
	r := e.api(http.MethodGet, "/v1/audit?"+query, nil)
	if r.status != http.StatusOK {
		t.Fatalf("audit: %d %s", r.status, r.body)
	}
	var page struct {
		Items []auditEvent `json:"items"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	return page.Items
}

// eventually polls cond until it holds, for events that are written asynchronously
// (token events are group-committed within milliseconds).
func (e *env) eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func base64RawURL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
