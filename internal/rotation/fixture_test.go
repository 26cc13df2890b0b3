package rotation_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/keys"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/oauth"
	"github.com/lanyardhq/lanyard/internal/rotation"
	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/secrets/local"
	"github.com/lanyardhq/lanyard/internal/secrets/vault"
	"github.com/lanyardhq/lanyard/internal/secrets/vault/vaulttest"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(vaulttest.Main(m)) }

const issuer = "https://id.example.com"

// clock is a settable clock shared by every part of a fixture.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// flakyBackend fails chosen operations of a real backend on demand.
type flakyBackend struct {
	secrets.Backend
	failPut, failGet atomic.Bool
	puts             atomic.Int32
}

var errInjected = errors.New("injected failure")

func (f *flakyBackend) Put(ctx context.Context, p string, d map[string]string) (int, error) {
	if f.failPut.Load() {
		return 0, fmt.Errorf("put %s: %w", p, errInjected)
	}
	f.puts.Add(1)
	return f.Backend.Put(ctx, p, d)
}

func (f *flakyBackend) Get(ctx context.Context, p string, v int) (*secrets.Secret, error) {
	if f.failGet.Load() {
		return nil, fmt.Errorf("get %s: %w", p, errInjected)
	}
	return f.Backend.Get(ctx, p, v)
}

// flakyStore fails chosen database commits of a real store on demand.
type flakyStore struct {
	*gormstore.Store
	failRotate, failUpdateRotation, failCreateKey atomic.Bool
}

func (f *flakyStore) RotateCredential(ctx context.Context, id string, next *store.Credential, until time.Time) error {
	if f.failRotate.Load() {
		return fmt.Errorf("commit: %w", errInjected)
	}
	return f.Store.RotateCredential(ctx, id, next, until)
}

func (f *flakyStore) UpdateRotation(ctx context.Context, id string, fn func(*store.Rotation) error) (*store.Rotation, error) {
	if f.failUpdateRotation.Load() {
		return nil, fmt.Errorf("commit: %w", errInjected)
	}
	return f.Store.UpdateRotation(ctx, id, fn)
}

func (f *flakyStore) CreateSigningKey(ctx context.Context, k *store.SigningKey) error {
	if f.failCreateKey.Load() {
		return fmt.Errorf("commit: %w", errInjected)
	}
	return f.Store.CreateSigningKey(ctx, k)
}

// env is one "database + secrets backend" that several server instances (replicas, or
// one process before and after a restart) share.
type env struct {
	t     *testing.T
	st    *flakyStore
	sb    *flakyBackend
	clock *clock
	hash  *lifecycle.SecretHasher
	proxy *vaulttest.Proxy // vault only
}

// instance is one running server's worth of parts.
type instance struct {
	env   *env
	svc   *lifecycle.Service
	km    *keys.Manager
	p     *oauth.Provider
	eng   *rotation.Engine
	audit *audit.Log
	hook  atomic.Pointer[string] // a hook point at which to stop
	herr  error
	stop  func()
}

// backends runs fn against the local backend and a real Vault dev server.
func backends(t *testing.T, fn func(t *testing.T, mk func(t *testing.T) *env)) {
	t.Run("local", func(t *testing.T) { fn(t, func(t *testing.T) *env { return newEnv(t, "local") }) })
	t.Run("vault", func(t *testing.T) { fn(t, func(t *testing.T) *env { return newEnv(t, "vault") }) })
}

func newEnv(t *testing.T, backend string) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}}
	e.st = &flakyStore{Store: storetest.OpenSQLite(t)}
	var sb secrets.Backend
	switch backend {
	case "local":
		master := make([]byte, 32)
		rand.Read(master)
		l, err := local.New(t.TempDir(), master)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		sb = l
	case "vault":
		srv := vaulttest.Require(t)
		p, err := vaulttest.NewProxy(srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		e.proxy = p
		// Each test writes under its own prefix of the shared dev server.
		var b [6]byte
		rand.Read(b[:])
		v, err := vault.New(t.Context(), vault.Config{Address: p.Addr, Token: srv.RootToken, PathPrefix: fmt.Sprintf("t%x", b),
			MaxRetries: -1, Timeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		sb = v
	}
	e.sb = &flakyBackend{Backend: sb}
	var err error
	if e.hash, err = lifecycle.NewSecretHasher([]byte("pepper-for-tests-0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	return e
}

// start builds an instance over the env, as a server start does (keys Init included).
func (e *env) start(t *testing.T, owner string, mod func(*rotation.Options)) *instance {
	t.Helper()
	in := &instance{env: e}
	in.audit = audit.New(e.st, nil, audit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.audit.Run(ctx) }()
	in.stop = func() { cancel(); <-done }
	t.Cleanup(in.stop)
	hook := func(_ context.Context, point string) error {
		if p := in.hook.Load(); p != nil && *p == point {
			if in.herr != nil {
				return in.herr
			}
			return rotation.ErrStop
		}
		return nil
	}
	in.svc = lifecycle.New(e.st, in.audit, e.hash, lifecycle.Options{Now: e.clock.Now, Secrets: e.sb, Hook: hook, CredentialGrace: time.Hour})
	in.km = keys.NewManager(e.st, e.sb, nil, keys.Options{Now: e.clock.Now, MaxTokenTTL: time.Hour})
	if err := in.km.Init(t.Context()); err != nil {
		t.Fatalf("keys Init: %v", err)
	}
	in.p = oauth.New(oauth.Deps{Store: e.st, Keys: in.km, Audit: in.audit, Hasher: e.hash}, oauth.Options{
		Issuer: issuer, MaxTokenTTL: time.Hour, Now: e.clock.Now, ClientCacheTTL: time.Nanosecond,
	})
	in.svc.OnChange(in.p.Invalidate)
	opts := rotation.Options{
		AgentGrace: time.Hour, KeyEvery: 0, PublishAhead: 10 * time.Minute, CheckInterval: time.Minute,
		LeaseTTL: 2 * time.Minute, Owner: owner, Now: e.clock.Now, Hook: hook, Algs: []string{keys.ES256},
	}
	if mod != nil {
		mod(&opts)
	}
	in.eng = rotation.New(e.st, in.svc, in.km, e.sb, in.audit, opts)
	return in
}

// stopAt makes the instance stop (as a crash would) at a hook point; "" clears it.
func (in *instance) stopAt(point string) {
	if point == "" {
		in.hook.Store(nil)
		return
	}
	in.hook.Store(&point)
}

// registerSecret registers a client_secret agent and returns its id and secret.
func (in *instance) registerSecret(t *testing.T, name string) (string, string) {
	t.Helper()
	reg, err := in.svc.Register(t.Context(), "admin", lifecycle.RegisterRequest{
		Name: name, Namespace: "prod", Owner: "team", Credential: &lifecycle.CredentialRequest{Type: store.CredentialClientSecret},
		AllowedScopes: []string{"read"},
	})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return reg.Agent.ID, reg.ClientSecret
}

// token asks for a token with client_secret_basic and returns the HTTP status and kid.
func (in *instance) token(t *testing.T, clientID, secret string) (int, string) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	rec := httptest.NewRecorder()
	in.p.Token(rec, req)
	return rec.Code, kidOf(t, rec)
}

// tokenJWT asks for a token with a private_key_jwt assertion signed by the JWK.
func (in *instance) tokenJWT(t *testing.T, clientID, privJWK string) int {
	t.Helper()
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON([]byte(privJWK)); err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := in.env.clock.Now()
	var jti [8]byte
	rand.Read(jti[:])
	assertion, err := josejwt.Signed(signer).Claims(josejwt.Claims{
		Issuer: clientID, Subject: clientID, Audience: josejwt.Audience{issuer + "/oauth2/token"},
		IssuedAt: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(time.Minute)), ID: fmt.Sprintf("%x", jti),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}, "client_id": {clientID},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	in.p.Token(rec, req)
	return rec.Code
}

func kidOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	if rec.Code != http.StatusOK {
		return ""
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(rec.Body.Bytes(), &body)
	tok, err := josejwt.ParseSigned(body.AccessToken, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil || len(tok.Headers) == 0 {
		t.Fatalf("access token does not parse: %v", err)
	}
	return tok.Headers[0].KeyID
}

// jwksKIDs returns the kids the instance publishes.
func (in *instance) jwksKIDs(t *testing.T) map[string]bool {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(in.km.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, k := range set.Keys {
		out[k.KeyID] = true
	}
	return out
}

// latestSecret reads the agent's latest client secret from the backend, as the agent's
// runtime would.
func (e *env) latestSecret(t *testing.T, name string) (string, int) {
	t.Helper()
	s, err := e.sb.Backend.Get(t.Context(), lifecycle.AgentSecretPath("prod", name), 0)
	if err != nil {
		t.Fatalf("read the agent's secret: %v", err)
	}
	return s.Data["client_secret"], s.Version
}

// setPolicy makes the agent's credential due every interval.
func (in *instance) setPolicy(t *testing.T, id string, every, grace time.Duration) {
	t.Helper()
	if err := in.eng.SetAgentPolicy(t.Context(), id, every, grace); err != nil {
		t.Fatal(err)
	}
}

// openRotation returns the only unfinished rotation, or nil.
func (e *env) openRotations(t *testing.T) []store.Rotation {
	t.Helper()
	open, err := e.st.OpenRotations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return open
}

// auditTypes returns the types of the audit events recorded so far.
func (e *env) auditTypes(t *testing.T) map[string]int {
	t.Helper()
	evs, err := e.st.ListAudit(t.Context(), store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range evs {
		out[ev.Type]++
	}
	return out
}
