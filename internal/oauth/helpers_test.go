package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/keys"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/protocol"
	"github.com/lanyardhq/lanyard/internal/secrets/local"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

const (
	testIssuer = "https://id.example.com"
	tokenURL   = testIssuer + "/oauth2/token"
	adminToken = "admin-token-for-tests-0123456789abcdef"
)

// clock is a settable clock; its times are whole seconds.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeAdmin accepts exactly adminToken.
type fakeAdmin struct{}

func (fakeAdmin) CheckAdminToken(_ context.Context, tok string) bool { return tok == adminToken }

// fixture is a Provider wired as the server wires it: a real SQLite store, real
// signing keys in a local secrets backend, a running audit log, and a lifecycle
// Service whose changes invalidate the provider's client cache.
type fixture struct {
	reg   *prometheus.Registry
	st    *gormstore.Store
	keys  *keys.Manager
	audit *audit.Log
	svc   *lifecycle.Service
	p     *Provider
	clock *clock
}

// newFixture builds the fixture. opts.Issuer and opts.Now default to testIssuer and
// the fixture's clock.
func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	return newFixtureOn(t, storetest.OpenSQLite(t), opts)
}

// newFixtureOn builds the fixture over st.
func newFixtureOn(t testing.TB, st *gormstore.Store, opts Options) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{st: st, clock: newClock()}

	master := make([]byte, 32)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	sb, err := local.New(t.TempDir(), master)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	// The key manager runs on the real clock: token signing keys are not under test.
	f.keys = keys.NewManager(st, sb, nil, keys.Options{})
	if err := f.keys.Init(ctx); err != nil {
		t.Fatalf("keys Init: %v", err)
	}

	f.audit = audit.New(st, nil, audit.Options{})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.audit.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("audit Run: %v", err)
		}
		// Refusal events carry attacker-chosen text; none may be lost for it.
		if s := f.audit.Stats(); s.Failed != 0 {
			t.Errorf("audit lost %d events", s.Failed)
		}
	})

	hasher, err := lifecycle.NewSecretHasher([]byte("pepper-for-tests-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	f.svc = lifecycle.New(st, f.audit, hasher, lifecycle.Options{Now: f.clock.Now, MaxTokenTTL: 24 * time.Hour})
	if opts.Issuer == "" {
		opts.Issuer = testIssuer
	}
	if opts.Now == nil {
		opts.Now = f.clock.Now
	}
	f.reg = prometheus.NewRegistry()
	opts.Registerer = f.reg
	f.p = New(Deps{Store: st, Keys: f.keys, Audit: f.audit, Hasher: hasher, Admin: fakeAdmin{}}, opts)
	f.svc.OnChange(f.p.Invalidate)
	return f
}

var nameSeq atomic.Int64

// registerReq returns a valid registration for an ES256 private_key_jwt agent whose
// only key is pub under kid.
func registerReq(t testing.TB, pub any, kid string) lifecycle.RegisterRequest {
	t.Helper()
	return lifecycle.RegisterRequest{
		Name:             "agent-" + itoa(nameSeq.Add(1)),
		Namespace:        "prod",
		Owner:            "alice@example.com",
		Credential:       &lifecycle.CredentialRequest{Type: store.CredentialPrivateKeyJWT, JWKS: jwksOf(t, jose.JSONWebKey{Key: pub, KeyID: kid})},
		AllowedScopes:    []string{"tickets:read", "tickets:write"},
		AllowedResources: []string{"https://api.example.com", "https://files.example.com"},
		MaxTokenTTL:      "10m",
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (f *fixture) register(t testing.TB, req lifecycle.RegisterRequest) *lifecycle.Registered {
	t.Helper()
	reg, err := f.svc.Register(context.Background(), "admin", req)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return reg
}

// registerJWT registers an active ES256 agent holding key under kid "k1".
func (f *fixture) registerJWT(t testing.TB, key *ecdsa.PrivateKey, mod ...func(*lifecycle.RegisterRequest)) *store.Agent {
	t.Helper()
	req := registerReq(t, &key.PublicKey, "k1")
	for _, m := range mod {
		m(&req)
	}
	return &f.register(t, req).Agent.Agent
}

// registerSecret registers an active client_secret agent.
func (f *fixture) registerSecret(t testing.TB) (*store.Agent, string) {
	t.Helper()
	req := registerReq(t, &ecKey().PublicKey, "k1")
	req.Credential = &lifecycle.CredentialRequest{Type: store.CredentialClientSecret}
	reg := f.register(t, req)
	return &reg.Agent.Agent, reg.ClientSecret
}

var (
	ecKey  = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	ecKey2 = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func jwksOf(t testing.TB, keys ...jose.JSONWebKey) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var jtiSeq atomic.Int64

// claims returns the claims of a valid client assertion for clientID at now.
func claims(clientID string, now time.Time) map[string]any {
	return map[string]any{
		"iss": clientID,
		"sub": clientID,
		"aud": tokenURL,
		"iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(),
		"jti": "jti-" + itoa(jtiSeq.Add(1)),
	}
}

// sign returns a compact JWS of c signed by key with alg, with kid if not empty.
func sign(t testing.TB, key any, alg jose.SignatureAlgorithm, kid string, c map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// assertion returns a valid ES256 client assertion for agent a signed with key (kid k1).
func (f *fixture) assertion(t testing.TB, a *store.Agent, key *ecdsa.PrivateKey) string {
	t.Helper()
	return sign(t, key, jose.ES256, "k1", claims(a.ClientID, f.clock.Now()))
}

// unsigned builds a JWS from raw header and claims JSON and a fake signature.
func unsigned(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + enc([]byte("not-a-signature"))
}

func assertionForm(assertion string, extra ...string) url.Values {
	v := url.Values{
		"grant_type":            {protocol.GrantClientCredentials},
		"client_assertion_type": {protocol.AssertionTypeJWTBearer},
		"client_assertion":      {assertion},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Add(extra[i], extra[i+1])
	}
	return v
}

// post sends form to handler h as a POST from a client.
func post(h http.HandlerFunc, path string, form url.Values, mod ...func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, m := range mod {
		m(req)
	}
	rec := httptest.NewRecorder()
	h(rec, req)
	return rec
}

func (f *fixture) token(form url.Values, mod ...func(*http.Request)) *httptest.ResponseRecorder {
	return post(f.p.Token, "/oauth2/token", form, mod...)
}

// refusals returns lanyard_tokens_refused_total by reason, read from the registry.
func (f *fixture) refusals(t testing.TB) map[string]float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "lanyard_tokens_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// refuse sends form to the token endpoint and checks it is refused with status and
// code, counted under reason (when not empty) and under no other.
func (f *fixture) refuse(t testing.TB, form url.Values, status int, code, reason string, mod ...func(*http.Request)) oauthError {
	t.Helper()
	before := f.refusals(t)
	rec := f.token(form, mod...)
	e := wantError(t, rec, status, code)
	after := f.refusals(t)
	for r, n := range after {
		if d := n - before[r]; d != 0 && r != reason && reason != "" {
			t.Errorf("refusal counted under %q, want %q (description %q)", r, reason, e.Description)
		}
	}
	if reason != "" && after[reason]-before[reason] != 1 {
		t.Errorf("refusal not counted under %q (description %q)", reason, e.Description)
	}
	return e
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// wantToken checks rec is a successful token response and returns it.
func wantToken(t testing.TB, rec *httptest.ResponseRecorder) tokenResponse {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("token: status %d, body %s; want 200", rec.Code, rec.Body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil {
		t.Fatalf("token response %s: %v", rec.Body, err)
	}
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
		t.Fatalf("token response %s; want an access token of type Bearer", rec.Body)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	return tr
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// wantError checks rec is an RFC 6749 error response with status and code.
func wantError(t testing.TB, rec *httptest.ResponseRecorder, status int, code string) oauthError {
	t.Helper()
	var e oauthError
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", rec.Body, err)
	}
	if rec.Code != status || e.Error != code {
		t.Fatalf("got %d %s (%s); want %d %s", rec.Code, e.Error, e.Description, status, code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	return e
}

// openSQLiteStderr opens a migrated SQLite store like storetest.OpenSQLite, but logs
// the store's warnings to stderr instead of t.Log: a fuzz target may not call f.Log,
// and a slow query under the fuzzer's load is a warning worth seeing, not a panic.
func openSQLiteStderr(t testing.TB) *gormstore.Store {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := gormstore.Open(ctx, storetest.SQLitePath(t), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}
