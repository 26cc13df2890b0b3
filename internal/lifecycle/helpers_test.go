package lifecycle_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// clock is a settable clock for Options.Now. Its times are whole seconds, which every
// store keeps exactly.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

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

// fixture is a Service over a real migrated SQLite store and a running audit.Log.
type fixture struct {
	st     *gormstore.Store
	svc    *lifecycle.Service
	hasher *lifecycle.SecretHasher
	clock  *clock

	mu      sync.Mutex
	changes []store.Agent // what the OnChange listener saw, in order
}

const actor = "admin"

var pepper = []byte("pepper-for-tests-0123456789abcdef")

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st := storetest.OpenSQLite(t)
	log := audit.New(st, nil, audit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- log.Run(ctx) }()
	// Registered after OpenSQLite's cleanup, so it runs first: the log drains before
	// the store closes.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("audit Run: %v", err)
		}
	})
	hasher, err := lifecycle.NewSecretHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, hasher: hasher, clock: newClock()}
	f.svc = lifecycle.New(st, log, hasher, lifecycle.Options{Now: f.clock.Now})
	f.svc.OnChange(func(a *store.Agent) {
		f.mu.Lock()
		f.changes = append(f.changes, *a)
		f.mu.Unlock()
	})
	return f
}

// takeChanges returns and forgets what the listener saw.
func (f *fixture) takeChanges() []store.Agent {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.changes
	f.changes = nil
	return c
}

var nameSeq atomic.Int64

func uniqueName() string { return fmt.Sprintf("agent-%d", nameSeq.Add(1)) }

// validRequest returns a registration that passes validation, with a fresh name.
func validRequest(t *testing.T) lifecycle.RegisterRequest {
	t.Helper()
	return lifecycle.RegisterRequest{
		Name:             uniqueName(),
		Namespace:        "prod",
		Owner:            "alice@example.com",
		Purpose:          "summarise tickets",
		RiskLevel:        "low",
		Credential:       &lifecycle.CredentialRequest{Type: store.CredentialPrivateKeyJWT, JWKS: jwksOf(t, publicJWK(&ecKey().PublicKey, "k1", ""))},
		AllowedScopes:    []string{"tickets:read", "tickets:write"},
		AllowedResources: []string{"https://api.example.com/"},
		MaxTokenTTL:      "10m",
	}
}

func (f *fixture) register(t *testing.T, req lifecycle.RegisterRequest) *lifecycle.Registered {
	t.Helper()
	reg, err := f.svc.Register(t.Context(), actor, req)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return reg
}

func (f *fixture) agent(t *testing.T, id string) *store.Agent {
	t.Helper()
	a, err := f.st.GetAgent(t.Context(), id)
	if err != nil {
		t.Fatalf("GetAgent(%s): %v", id, err)
	}
	return a
}

func (f *fixture) credentials(t *testing.T, id string) []store.Credential {
	t.Helper()
	c, err := f.st.ListCredentials(t.Context(), id)
	if err != nil {
		t.Fatalf("ListCredentials(%s): %v", id, err)
	}
	return c
}

func (f *fixture) auditOf(t *testing.T, agentID string) []store.AuditEvent {
	t.Helper()
	evs, err := f.st.ListAudit(t.Context(), store.AuditFilter{AgentID: agentID, Limit: 1000})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	return evs
}

func (f *fixture) auditCount(t *testing.T) int64 {
	t.Helper()
	h, err := f.st.AuditHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return h.Seq
}

func eventData(t *testing.T, e store.AuditEvent) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatalf("audit event %s data %q: %v", e.Type, e.Data, err)
	}
	return m
}

// Keys are generated once per test binary: RSA generation is slow under -race.
var (
	ecKey   = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	ecKey2  = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	p384Key = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	rsaKey  = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	rsa1024 = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 1024)) })
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func publicJWK(key any, kid, alg string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg}
}

// jwksOf marshals keys as a JWK Set the way an agent would send it.
func jwksOf(t testing.TB, keys ...jose.JSONWebKey) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatalf("marshal JWKS: %v", err)
	}
	return b
}
