package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/secrets/local"
	"github.com/lanyardhq/lanyard/internal/store"
)

// claims is a realistic access token payload.
var claims = []byte(`{"iss":"https://lanyard.example.com","sub":"agt_01JQ8Z6X3K9V2M4N7P5R","client_id":"invoice-triage","aud":"https://erp.example.com","scope":"invoices:read erp:post","iat":1767225600,"nbf":1767225600,"exp":1767225900,"jti":"8f14e45fceea167a5a36dedd4bea2543","namespace":"finance","att":{"id":"att_01JQ8Z","model":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","host":"tpm","exp":1767226200}}`)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one deployment: a store, a secrets backend and a clock shared by the
// Managers (replicas, or one process across restarts) made from it.
type env struct {
	st    *memStore
	sb    *local.Backend
	clock *fakeClock
	logs  *syncBuffer
	ttl   time.Duration
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t testing.TB) *env {
	t.Helper()
	key := make([]byte, local.KeySize)
	rand.Read(key)
	sb, err := local.New(t.TempDir(), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return &env{
		st:    newMemStore(),
		sb:    sb,
		clock: &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		logs:  &syncBuffer{},
		ttl:   10 * time.Minute,
	}
}

func (e *env) manager(opts ...func(*Options)) *Manager {
	o := Options{MaxTokenTTL: e.ttl, Now: e.clock.Now}
	for _, f := range opts {
		f(&o)
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return NewManager(e.st, e.sb, logger, o)
}

func (e *env) started(t testing.TB) *Manager {
	t.Helper()
	m := e.manager()
	if err := m.Init(context.Background()); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return m
}

func sign(t testing.TB, m *Manager, alg, typ string, payload []byte) string {
	t.Helper()
	tok, err := m.Sign(alg, typ, payload)
	if err != nil {
		t.Fatalf("Sign(%s): %v", alg, err)
	}
	return tok
}

func mustVerify(t testing.TB, m *Manager, tok string) []byte {
	t.Helper()
	payload, _, err := m.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return payload
}

func wantInvalid(t testing.TB, m *Manager, tok, why string) {
	t.Helper()
	payload, typ, err := m.Verify(tok)
	if !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Verify(%s) = %q, %q, %v; want ErrInvalidToken", why, payload, typ, err)
	}
	if payload != nil || typ != "" {
		t.Fatalf("Verify(%s) returned a payload or typ with its error", why)
	}
	t.Logf("refused: %v", err)
}

func activeKID(t testing.TB, m *Manager, alg string) string {
	t.Helper()
	kid, ok := m.ActiveKID(alg)
	if !ok {
		t.Fatalf("no active %s key", alg)
	}
	return kid
}

func jwksKIDs(t testing.TB, m *Manager) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(m.JWKS(), &set); err != nil {
		t.Fatalf("JWKS is not a JWK Set: %v", err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

func TestSignVerifyRoundTrip(t *testing.T) {
	e := newEnv(t)
	m := e.started(t)
	for _, alg := range []string{ES256, RS256} {
		for _, typ := range []string{"at+jwt", "JWT", "application/at+jwt"} {
			t.Run(alg+"/"+typ, func(t *testing.T) {
				tok := sign(t, m, alg, typ, claims)
				parts := strings.Split(tok, ".")
				if len(parts) != 3 {
					t.Fatalf("token has %d parts", len(parts))
				}
				hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":%q}`, alg, activeKID(t, m, alg), typ)
				if string(hdr) != want {
					t.Errorf("header = %s, want %s", hdr, want)
				}
				sig, err := base64.RawURLEncoding.DecodeString(parts[2])
				if err != nil {
					t.Fatal(err)
				}
				wantLen := map[string]int{ES256: 64, RS256: 256}[alg]
				if len(sig) != wantLen {
					t.Errorf("signature is %d bytes, want %d", len(sig), wantLen)
				}
				payload, gotTyp, err := m.Verify(tok)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if !bytes.Equal(payload, claims) || gotTyp != typ {
					t.Errorf("Verify = %q, %q", payload, gotTyp)
				}
			})
		}
	}
	t.Run("payload used as is", func(t *testing.T) {
		odd := []byte("not JSON \x00\xff")
		if got := mustVerify(t, m, sign(t, m, ES256, "JWT", odd)); !bytes.Equal(got, odd) {
			t.Errorf("payload changed: %q", got)
		}
	})
}

func TestSignErrors(t *testing.T) {
	e := newEnv(t)
	if _, err := e.manager().Sign(ES256, "at+jwt", claims); !errors.Is(err, ErrNoActiveKey) {
		t.Errorf("Sign before Init = %v, want ErrNoActiveKey", err)
	}
	m := e.started(t)
	for _, alg := range []string{"", "none", "HS256", "es256", "ES384", "PS256", "EdDSA"} {
		if _, err := m.Sign(alg, "at+jwt", claims); !errors.Is(err, ErrUnsupportedAlg) {
			t.Errorf("Sign(%q) = %v, want ErrUnsupportedAlg", alg, err)
		}
	}
	for _, typ := range []string{"", `at+jwt","alg":"none`, "a b", "a\nb", "ä", strings.Repeat("x", maxTypLen+1), `\`} {
		if tok, err := m.Sign(ES256, typ, claims); err == nil {
			t.Errorf("Sign with typ %q = %s, want an error", typ, tok)
		}
	}
}

// TestHeaderCache checks the per-key cache of encoded headers stays bounded and
// correct past its capacity.
func TestHeaderCache(t *testing.T) {
	m := newEnv(t).started(t)
	for i := range 3 * maxCachedTyps {
		typ := fmt.Sprintf("t%d+jwt", i)
		_, gotTyp, err := m.Verify(sign(t, m, ES256, typ, claims))
		if err != nil || gotTyp != typ {
			t.Fatalf("typ %s: %q, %v", typ, gotTyp, err)
		}
	}
	if n := len(*m.cur.Load().active[0].headers.Load()); n > maxCachedTyps {
		t.Errorf("header cache holds %d entries, bound is %d", n, maxCachedTyps)
	}
}

// TestInteropGoJose checks Lanyard's tokens with an independent implementation
// (go-jose v4) against the published JWKS, and the reverse: tokens go-jose signs with
// Lanyard's key verify with Verify.
func TestInteropGoJose(t *testing.T) {
	m := newEnv(t).started(t)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(m.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want 2", len(set.Keys))
	}
	for _, alg := range []string{ES256, RS256} {
		t.Run(alg, func(t *testing.T) {
			kid := activeKID(t, m, alg)
			keys := set.Key(kid)
			if len(keys) != 1 {
				t.Fatalf("JWKS has %d keys with kid %s", len(keys), kid)
			}
			jwk := keys[0]
			if jwk.Use != "sig" || jwk.Algorithm != alg || !jwk.IsPublic() || !jwk.Valid() {
				t.Errorf("JWK: use %q alg %q public %v valid %v", jwk.Use, jwk.Algorithm, jwk.IsPublic(), jwk.Valid())
			}
			thumb, err := jwk.Thumbprint(crypto.SHA256)
			if err != nil || base64.RawURLEncoding.EncodeToString(thumb) != kid {
				t.Errorf("kid %s is not the RFC 7638 thumbprint (%v)", kid, err)
			}
			for range 50 { // many ES256 signatures: r and s of every length
				tok := sign(t, m, alg, "at+jwt", claims)
				jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
				if err != nil {
					t.Fatalf("go-jose cannot parse: %v", err)
				}
				h := jws.Signatures[0].Header
				if h.KeyID != kid || h.Algorithm != alg || h.ExtraHeaders["typ"] != "at+jwt" {
					t.Fatalf("go-jose sees header %+v", h)
				}
				payload, err := jws.Verify(&jwk)
				if err != nil {
					t.Fatalf("go-jose rejects the signature: %v", err)
				}
				if !bytes.Equal(payload, claims) {
					t.Fatal("go-jose sees another payload")
				}
			}

			// The reverse direction: a standard signer with our key.
			k := m.cur.Load().active[algIndex(alg)]
			var priv any = k.ec
			if k.rsa != nil {
				priv = k.rsa
			}
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: priv},
				(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
			if err != nil {
				t.Fatal(err)
			}
			for range 20 {
				jws, err := signer.Sign(claims)
				if err != nil {
					t.Fatal(err)
				}
				tok, err := jws.CompactSerialize()
				if err != nil {
					t.Fatal(err)
				}
				// go-jose writes either S; Lanyard accepts only the low one (see lowS).
				if alg == ES256 {
					if low := withLowS(t, tok); low != tok {
						wantInvalid(t, m, tok, "go-jose's high-S signature")
						tok = low
					}
				}
				if payload, typ, err := m.Verify(tok); err != nil || !bytes.Equal(payload, claims) || typ != "at+jwt" {
					t.Fatalf("Verify of go-jose's token: %q, %q, %v", payload, typ, err)
				}
			}
		})
	}
}

func TestJWKSContents(t *testing.T) {
	m := newEnv(t).started(t)
	raw := m.JWKS()
	if &m.JWKS()[0] != &raw[0] {
		t.Error("JWKS is rebuilt on every call; it should be cached")
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"kty": true, "kid": true, "alg": true, "use": true, "crv": true, "x": true, "y": true, "n": true, "e": true}
	for _, k := range doc.Keys {
		for name := range k {
			if !allowed[name] {
				t.Errorf("JWKS key has member %q (private or unexpected)", name)
			}
		}
		for _, name := range []string{"kty", "kid", "alg", "use"} {
			if _, ok := k[name]; !ok {
				t.Errorf("JWKS key lacks %q", name)
			}
		}
		if k["use"] != "sig" {
			t.Errorf("use = %v", k["use"])
		}
	}
	if empty := newEnv(t).manager().JWKS(); string(empty) != `{"keys":[]}` {
		t.Errorf("JWKS before Init = %s", empty)
	}
}

func TestInitCreatesExpectedKeys(t *testing.T) {
	e := newEnv(t)
	var events []Event
	m := e.manager(func(o *Options) {
		o.OnEvent = func(_ context.Context, ev Event) { events = append(events, ev) }
	})
	if err := m.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs, _ := e.st.ListSigningKeys(t.Context())
	if len(recs) != 2 {
		t.Fatalf("%d keys after Init, want 2", len(recs))
	}
	for _, r := range recs {
		if r.State != store.KeyActive || r.ActivatedAt == nil || r.SecretVersion != 1 {
			t.Errorf("%s: state %s activated %v secret version %d", r.Alg, r.State, r.ActivatedAt, r.SecretVersion)
		}
		if bytes.Contains(r.PublicJWK, []byte(`"d"`)) {
			t.Errorf("%s: the database record holds a private key: %s", r.Alg, r.PublicJWK)
		}
		sec, err := e.sb.Get(t.Context(), r.SecretPath, r.SecretVersion)
		if err != nil {
			t.Fatalf("%s: secret: %v", r.Alg, err)
		}
		block, _ := pem.Decode([]byte(sec.Data[secretKeyPEM]))
		if block == nil || block.Type != "PRIVATE KEY" {
			t.Fatalf("%s: secret is not PKCS#8 PEM", r.Alg)
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			if r.Alg != ES256 || k.Curve != elliptic.P256() {
				t.Errorf("%s key is EC on %s", r.Alg, k.Curve.Params().Name)
			}
		case *rsa.PrivateKey:
			if r.Alg != RS256 || k.N.BitLen() != 2048 {
				t.Errorf("%s key is RSA-%d", r.Alg, k.N.BitLen())
			}
		}
		thumb, _ := base64.RawURLEncoding.DecodeString(r.KID)
		if r.SecretPath != SecretPathPrefix+hex.EncodeToString(thumb) {
			t.Errorf("secret path %s", r.SecretPath)
		}
	}
	want := []string{"created ES256", "activated ES256", "created RS256", "activated RS256"}
	var got []string
	for _, ev := range events {
		got = append(got, ev.Type+" "+ev.Alg)
	}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestInitIdempotent(t *testing.T) {
	e := newEnv(t)
	m1 := e.started(t)
	es, rs := activeKID(t, m1, ES256), activeKID(t, m1, RS256)
	tok := sign(t, m1, ES256, "at+jwt", claims)
	if err := m1.Init(t.Context()); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	m2 := e.started(t) // a restart, or another replica
	for _, m := range []*Manager{m1, m2} {
		if activeKID(t, m, ES256) != es || activeKID(t, m, RS256) != rs {
			t.Error("Init changed the active keys")
		}
	}
	if recs, _ := e.st.ListSigningKeys(t.Context()); len(recs) != 2 {
		t.Errorf("%d keys after three Inits, want 2", len(recs))
	}
	mustVerify(t, m2, tok)
	mustVerify(t, m1, sign(t, m2, RS256, "at+jwt", claims))
}

// crash runs f, which must panic with errCrash (a hook's simulated process death).
func crash(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != errCrash {
			t.Fatalf("expected a simulated crash, got %v", r)
		}
	}()
	f()
}

var errCrash = errors.New("simulated crash")

func crashOnce(match func(k store.SigningKey) bool) func(k store.SigningKey) error {
	var once sync.Once
	return func(k store.SigningKey) error {
		if match(k) {
			once.Do(func() { panic(errCrash) })
		}
		return nil
	}
}

// TestInitCrashAfterSecretWrite kills the first start between writing the private key
// and recording it: the restart must still end with active keys.
func TestInitCrashAfterSecretWrite(t *testing.T) {
	e := newEnv(t)
	var orphan string
	e.st.setHooks(crashOnce(func(k store.SigningKey) bool { orphan = k.SecretPath; return true }), nil)
	crash(t, func() { e.manager().Init(t.Context()) })
	e.st.setHooks(nil, nil)
	if recs, _ := e.st.ListSigningKeys(t.Context()); len(recs) != 0 {
		t.Fatalf("%d records after the crash, want 0", len(recs))
	}
	if _, err := e.sb.Get(t.Context(), orphan, 0); err != nil {
		t.Fatalf("the crash should have left the secret behind: %v", err)
	}
	m := e.started(t)
	for _, alg := range []string{ES256, RS256} {
		mustVerify(t, m, sign(t, m, alg, "at+jwt", claims))
	}
}

func TestRotate(t *testing.T) {
	e := newEnv(t)
	var events []Event
	m := e.manager(func(o *Options) {
		o.OnEvent = func(_ context.Context, ev Event) { events = append(events, ev) }
	})
	if err := m.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	events = nil
	oldKID, rsKID := activeKID(t, m, ES256), activeKID(t, m, RS256)
	oldRec, _ := e.st.get(oldKID)
	before := sign(t, m, ES256, "at+jwt", claims)

	e.clock.Advance(time.Hour)
	rotatedAt := e.clock.Now()
	if err := m.Rotate(t.Context(), ES256); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	newKID := activeKID(t, m, ES256)
	if newKID == oldKID {
		t.Fatal("Rotate kept the active key")
	}
	if activeKID(t, m, RS256) != rsKID {
		t.Error("rotating ES256 changed the RS256 key")
	}
	old, _ := e.st.get(oldKID)
	if old.State != store.KeyRetired || old.RetiredAt == nil || !old.RetiredAt.Equal(rotatedAt) ||
		old.NotAfter == nil || !old.NotAfter.Equal(rotatedAt.Add(e.ttl)) {
		t.Errorf("old key: state %s retired %v not after %v", old.State, old.RetiredAt, old.NotAfter)
	}
	cur, _ := e.st.get(newKID)
	if cur.State != store.KeyActive || cur.ActivatedAt == nil || !cur.ActivatedAt.Equal(rotatedAt) {
		t.Errorf("new key: state %s activated %v", cur.State, cur.ActivatedAt)
	}
	if _, err := e.sb.Get(t.Context(), oldRec.SecretPath, 0); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("retired private key still in the secrets backend: %v", err)
	}
	var got []string
	for _, ev := range events {
		got = append(got, ev.Type+" "+ev.KID)
	}
	if want := []string{"created " + newKID, "activated " + newKID, "retired " + oldKID}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}

	after := sign(t, m, ES256, "at+jwt", claims)
	if !strings.Contains(string(mustHeader(t, after)), newKID) {
		t.Error("new tokens are not signed with the new key")
	}
	mustVerify(t, m, before)
	mustVerify(t, m, after)
	if kids := jwksKIDs(t, m); !slices.Contains(kids, oldKID) || !slices.Contains(kids, newKID) || !slices.Contains(kids, rsKID) {
		t.Errorf("JWKS after rotation = %v", kids)
	}

	e.clock.Advance(e.ttl - time.Second)
	mustVerify(t, m, before)
	if !slices.Contains(jwksKIDs(t, m), oldKID) {
		t.Error("retired key left the JWKS before NotAfter")
	}
	e.clock.Advance(time.Second)
	wantInvalid(t, m, before, "a token of a key past NotAfter")
	if kids := jwksKIDs(t, m); slices.Contains(kids, oldKID) || len(kids) != 2 {
		t.Errorf("JWKS at NotAfter = %v, want the old key gone", kids)
	}
	mustVerify(t, m, after)

	// A restart long after still works, and does not resurrect the old key.
	e.clock.Advance(24 * time.Hour)
	m2 := e.started(t)
	if kids := jwksKIDs(t, m2); len(kids) != 2 {
		t.Errorf("JWKS after restart = %v", kids)
	}
	if err := m.Rotate(t.Context(), "HS256"); !errors.Is(err, ErrUnsupportedAlg) {
		t.Errorf("Rotate(HS256) = %v", err)
	}
}

func mustHeader(t testing.TB, tok string) []byte {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRotateCrashRecovery interrupts a rotation at each step and restarts: there must
// always be an active key, tokens signed before must keep verifying, and the next
// rotation must complete without leaving extra active keys.
func TestRotateCrashRecovery(t *testing.T) {
	cases := []struct {
		name           string
		create, update func(k store.SigningKey) bool
		// wantESKeys is the number of ES256 records after the restart and a second Rotate.
		wantESKeys int
	}{
		{"after secret write, before record", func(k store.SigningKey) bool { return true }, nil, 2},
		{"after next published, before activation", nil, func(k store.SigningKey) bool { return k.State == store.KeyActive }, 2},
		{"after activation, before retirement", nil, func(k store.SigningKey) bool { return k.State == store.KeyRetired }, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.started(t)
			oldKID := activeKID(t, m, ES256)
			before := sign(t, m, ES256, "at+jwt", claims)
			var create, update func(store.SigningKey) error
			if tc.create != nil {
				create = crashOnce(tc.create)
			}
			if tc.update != nil {
				update = crashOnce(tc.update)
			}
			e.st.setHooks(create, update)
			e.clock.Advance(time.Minute)
			crash(t, func() { m.Rotate(context.Background(), ES256) })
			e.st.setHooks(nil, nil)

			e.clock.Advance(time.Minute)
			m2 := e.started(t) // the restart
			if n := e.st.count(ES256)[store.KeyActive]; n != 1 {
				t.Errorf("%d active ES256 keys after restart, want 1", n)
			}
			mustVerify(t, m2, before)
			mustVerify(t, m2, sign(t, m2, ES256, "at+jwt", claims))
			if !slices.Contains(jwksKIDs(t, m2), oldKID) {
				t.Error("the key that signed live tokens is no longer published")
			}

			if err := m2.Rotate(t.Context(), ES256); err != nil {
				t.Fatalf("Rotate after restart: %v", err)
			}
			counts := e.st.count(ES256)
			if counts[store.KeyActive] != 1 || counts[store.KeyNext] != 0 {
				t.Errorf("after the second rotation: %v", counts)
			}
			if total := counts[store.KeyActive] + counts[store.KeyRetired]; total != tc.wantESKeys {
				t.Errorf("%d ES256 keys, want %d: %v", total, tc.wantESKeys, counts)
			}
			mustVerify(t, m2, before)
		})
	}
}

// TestInitReconcilesSeveralActiveKeys covers two replicas initialising at once.
func TestInitReconcilesSeveralActiveKeys(t *testing.T) {
	e := newEnv(t)
	m1 := e.started(t)
	k1 := activeKID(t, m1, ES256)
	tok1 := sign(t, m1, ES256, "at+jwt", claims)
	e.clock.Advance(time.Second)
	rec, err := e.manager().create(t.Context(), ES256, store.KeyActive) // the other replica's key
	if err != nil {
		t.Fatal(err)
	}
	m3 := e.started(t)
	if got := activeKID(t, m3, ES256); got != rec.KID {
		t.Errorf("active = %s, want the most recently activated %s", got, rec.KID)
	}
	if old, _ := e.st.get(k1); old.State != store.KeyRetired || old.NotAfter == nil {
		t.Errorf("older active key: %s, want retired", old.State)
	}
	mustVerify(t, m3, tok1)
	// m1 has not reloaded: it still signs with k1, which stays published until NotAfter.
	mustVerify(t, m3, sign(t, m1, ES256, "at+jwt", claims))
	if err := m1.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if activeKID(t, m1, ES256) != rec.KID {
		t.Error("Reload did not pick up the new active key")
	}
}

// TestReloadSeesOtherReplicasRotation: replica 2 learns of replica 1's rotation only
// through Reload.
func TestReloadSeesOtherReplicasRotation(t *testing.T) {
	e := newEnv(t)
	m1, m2 := e.started(t), e.started(t)
	if err := m1.Rotate(t.Context(), RS256); err != nil {
		t.Fatal(err)
	}
	tok := sign(t, m1, RS256, "at+jwt", claims)
	wantInvalid(t, m2, tok, "a token of a key m2 has not loaded")
	if err := m2.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, m2, tok)
	if activeKID(t, m2, RS256) != activeKID(t, m1, RS256) {
		t.Error("replicas disagree on the active key after Reload")
	}
}

func TestInitFailsWhenActiveSecretUnreadable(t *testing.T) {
	e := newEnv(t)
	m := e.started(t)
	kid := activeKID(t, m, ES256)
	rec, _ := e.st.get(kid)
	if err := e.sb.Destroy(t.Context(), rec.SecretPath); err != nil {
		t.Fatal(err)
	}
	err := e.manager().Init(t.Context())
	if err == nil || !strings.Contains(err.Error(), kid) || !strings.HasPrefix(err.Error(), "keys: ") {
		t.Fatalf("Init with the active key's secret gone = %v, want an error naming the kid", err)
	}
	if recs, _ := e.st.ListSigningKeys(t.Context()); len(recs) != 2 {
		t.Errorf("Init generated a replacement (%d keys); it must fail loudly instead", len(recs))
	}
	// Reload keeps serving with what it had.
	if err := m.Reload(t.Context()); err != nil {
		t.Fatalf("Reload with the key already loaded: %v", err)
	}
	mustVerify(t, m, sign(t, m, ES256, "at+jwt", claims))
	// The operator's way out: rotate, which does not need the old private key.
	if err := e.manager().Rotate(t.Context(), ES256); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	e.started(t)
}

func TestSwappedSecretRefused(t *testing.T) {
	e := newEnv(t)
	m := e.started(t)
	es, _ := e.st.get(activeKID(t, m, ES256))
	// Write another EC key as a new version of the active key's secret, and point the
	// record at it: the Manager must not sign under a kid with another key.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pemText, _ := marshalPrivate(other)
	v, err := e.sb.Put(t.Context(), es.SecretPath, map[string]string{secretKeyPEM: pemText})
	if err != nil {
		t.Fatal(err)
	}
	es.SecretVersion = v
	e.st.put(es)
	if err := e.manager().Init(t.Context()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Init with a swapped private key = %v", err)
	}
}

// TestInvalidRecordsNotPublished plants records the Manager must not vouch for.
func TestInvalidRecordsNotPublished(t *testing.T) {
	e := newEnv(t)
	m := e.started(t)
	good, _ := e.st.get(activeKID(t, m, ES256))
	evil, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	evilKID, _, evilJWK, _ := publicJWK(evil.Public(), ES256)
	privJWK, _ := json.Marshal(jose.JSONWebKey{Key: evil, KeyID: evilKID, Algorithm: ES256, Use: "sig"})
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallKID, _, smallJWK, _ := publicJWK(rsaKey.Public(), RS256)

	planted := map[string]store.SigningKey{
		"kid not the thumbprint": {KID: "attacker-chosen-kid", Alg: ES256, State: store.KeyNext, PublicJWK: evilJWK},
		"kid of another key":     {KID: good.KID + "x", Alg: ES256, State: store.KeyNext, PublicJWK: good.PublicJWK},
		"private JWK":            {KID: evilKID, Alg: ES256, State: store.KeyNext, PublicJWK: privJWK},
		"alg HS256":              {KID: "hs", Alg: "HS256", State: store.KeyNext, PublicJWK: []byte(`{"kty":"oct","k":"c2VjcmV0"}`)},
		"alg mismatch":           {KID: evilKID, Alg: RS256, State: store.KeyNext, PublicJWK: evilJWK},
		"RSA-1024":               {KID: smallKID, Alg: RS256, State: store.KeyNext, PublicJWK: smallJWK},
		"unknown state":          {KID: evilKID, Alg: ES256, State: "published", PublicJWK: evilJWK},
		"not JSON":               {KID: evilKID, Alg: ES256, State: store.KeyNext, PublicJWK: []byte("not json")},
	}
	for name, rec := range planted {
		t.Run(name, func(t *testing.T) {
			e.st.put(rec)
			defer func() {
				e.st.mu.Lock()
				delete(e.st.keys, rec.KID)
				e.st.mu.Unlock()
			}()
			if err := m.Reload(t.Context()); err != nil {
				t.Fatalf("Reload: %v", err)
			}
			if kids := jwksKIDs(t, m); slices.Contains(kids, rec.KID) || len(kids) != 2 {
				t.Errorf("JWKS = %v; the planted record is published", kids)
			}
			// A token the planted key signed must not verify.
			tok := signRaw(t, evil, fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"at+jwt"}`, rec.KID), claims)
			wantInvalid(t, m, tok, "a token of a planted key")
			if !strings.Contains(e.logs.String(), "ignoring invalid signing key record") {
				t.Error("the invalid record was not logged")
			}
		})
	}
}

// signRaw signs header and payload with key exactly as given: for building tokens
// with headers Sign would never write.
func signRaw(t testing.TB, key crypto.Signer, header string, payload []byte) string {
	t.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		der, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		if err := derToRaw(der, sig); err != nil {
			t.Fatal(err)
		}
	case *rsa.PrivateKey:
		var err error
		if sig, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:]); err != nil {
			t.Fatal(err)
		}
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func hs256(header string, payload, secret []byte) string {
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestVerifyRejects(t *testing.T) {
	e := newEnv(t)
	m := e.started(t)
	other := newEnv(t).started(t)
	esKID, rsKID := activeKID(t, m, ES256), activeKID(t, m, RS256)
	set := m.cur.Load()
	esKey, rsKey := set.active[0].ec, set.active[1].rsa
	es := sign(t, m, ES256, "at+jwt", claims)
	rs := sign(t, m, RS256, "at+jwt", claims)
	esParts, rsParts := strings.Split(es, "."), strings.Split(rs, ".")
	hdr := func(alg, kid string) string { return fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":"at+jwt"}`, alg, kid) }
	b64s := base64.RawURLEncoding.EncodeToString

	esPubDER, _ := x509.MarshalPKIXPublicKey(&esKey.PublicKey)
	rsPubDER, _ := x509.MarshalPKIXPublicKey(&rsKey.PublicKey)
	esPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: esPubDER})
	rsPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsPubDER})

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	derSig := func() string {
		raw, _ := base64.RawURLEncoding.DecodeString(esParts[2])
		return esParts[0] + "." + esParts[1] + "." + b64s(rawToDER(raw, nil))
	}()

	cases := []struct{ name, token string }{
		// Keys and algorithms.
		{"unknown kid", sign(t, other, ES256, "at+jwt", claims)},
		{"alg mismatch: RS256 header on the EC key, valid RSA signature", signRaw(t, rsKey, hdr(RS256, esKID), claims)},
		{"alg mismatch: ES256 header on the RSA key, valid EC signature", signRaw(t, esKey, hdr(ES256, rsKID), claims)},
		{"alg none, empty signature", b64s([]byte(hdr("none", esKID))) + "." + esParts[1] + "."},
		{"alg none, some signature", b64s([]byte(hdr("none", esKID))) + "." + esParts[1] + "." + esParts[2]},
		{"alg None", b64s([]byte(hdr("None", esKID))) + "." + esParts[1] + "." + esParts[2]},
		{"HS256 with the EC public key PEM as secret", hs256(hdr("HS256", esKID), claims, esPubPEM)},
		{"HS256 with the RSA public key PEM as secret", hs256(hdr("HS256", rsKID), claims, rsPubPEM)},
		{"HS256 with the RSA public key DER as secret", hs256(hdr("HS256", rsKID), claims, rsPubDER)},
		{"HS256 with the JWKS as secret", hs256(hdr("HS256", rsKID), claims, m.JWKS())},
		{"ES384", signRaw(t, esKey, hdr("ES384", esKID), claims)},
		{"PS256", signRaw(t, rsKey, hdr("PS256", rsKID), claims)},
		{"lower-case alg", signRaw(t, esKey, hdr("es256", esKID), claims)},
		{"signed by another key under our kid", signRaw(t, other.cur.Load().active[0].ec, hdr(ES256, esKID), claims)},

		// Tampering.
		{"tampered payload", esParts[0] + "." + b64s([]byte(strings.Replace(string(claims), "finance", "payroll", 1))) + "." + esParts[2]},
		{"tampered payload RS256", rsParts[0] + "." + b64s(append(bytes.Clone(claims), ' ')) + "." + rsParts[2]},
		{"payload of another token", esParts[0] + "." + strings.Split(sign(t, m, ES256, "at+jwt", []byte(`{"x":1}`)), ".")[1] + "." + esParts[2]},
		{"tampered typ", b64s([]byte(`{"alg":"ES256","kid":"`+esKID+`","typ":"JWT"}`)) + "." + esParts[1] + "." + esParts[2]},
		{"flipped signature ES256", esParts[0] + "." + esParts[1] + "." + flip(esParts[2], 10)},
		{"flipped signature RS256", rsParts[0] + "." + rsParts[1] + "." + flip(rsParts[2], 10)},
		{"zero signature ES256", esParts[0] + "." + esParts[1] + "." + b64s(make([]byte, 64))},
		{"truncated signature", esParts[0] + "." + esParts[1] + "." + esParts[2][:len(esParts[2])-2]},
		{"extended signature", esParts[0] + "." + esParts[1] + "." + esParts[2] + "AA"},
		{"ES256 signature in DER", derSig},
		{"RS256 signature on the ES256 token", esParts[0] + "." + esParts[1] + "." + rsParts[2]},

		// Headers Sign never writes, validly signed with our key.
		{"extra member jku", signRaw(t, esKey, `{"alg":"ES256","kid":"`+esKID+`","typ":"at+jwt","jku":"https://evil.example/jwks"}`, claims)},
		{"embedded jwk", signRaw(t, esKey, `{"alg":"ES256","jwk":{},"kid":"`+esKID+`","typ":"at+jwt"}`, claims)},
		{"crit", signRaw(t, esKey, `{"alg":"ES256","crit":["exp"],"kid":"`+esKID+`","typ":"at+jwt"}`, claims)},
		{"b64 false", signRaw(t, esKey, `{"alg":"ES256","b64":false,"kid":"`+esKID+`","typ":"at+jwt"}`, claims)},
		{"member order", signRaw(t, esKey, `{"kid":"`+esKID+`","alg":"ES256","typ":"at+jwt"}`, claims)},
		{"whitespace", signRaw(t, esKey, `{"alg": "ES256","kid":"`+esKID+`","typ":"at+jwt"}`, claims)},
		{"escaped alg", signRaw(t, esKey, `{"alg":"\u0045S256","kid":"`+esKID+`","typ":"at+jwt"}`, claims)},
		{"duplicate alg", signRaw(t, esKey, `{"alg":"ES256","kid":"`+esKID+`","typ":"at+jwt","alg":"none"}`, claims)},
		{"no typ", signRaw(t, esKey, `{"alg":"ES256","kid":"`+esKID+`"}`, claims)},
		{"no kid", signRaw(t, esKey, `{"alg":"ES256","typ":"at+jwt"}`, claims)},
		{"empty kid", signRaw(t, esKey, hdr(ES256, ""), claims)},
		{"kid with quote", signRaw(t, esKey, `{"alg":"ES256","kid":"a\"b","typ":"at+jwt"}`, claims)},
		{"empty typ", signRaw(t, esKey, `{"alg":"ES256","kid":"`+esKID+`","typ":""}`, claims)},
		{"header JSON array", signRaw(t, esKey, `["ES256"]`, claims)},
		{"header not JSON", signRaw(t, esKey, `alg=ES256`, claims)},
		{"empty payload", signRaw(t, esKey, hdr(ES256, esKID), nil)},

		// Malformed compact serialisations.
		{"empty", ""},
		{"one dot", "."},
		{"two dots", ".."},
		{"one part", esParts[0]},
		{"two parts", esParts[0] + "." + esParts[1]},
		{"four parts", es + ".AAAA"},
		{"JWE-like five parts", es + "." + esParts[1] + "." + esParts[2]},
		{"empty header", "." + esParts[1] + "." + esParts[2]},
		{"detached payload", esParts[0] + ".." + esParts[2]},
		{"empty signature", esParts[0] + "." + esParts[1] + "."},
		{"padded header", esParts[0] + "==." + esParts[1] + "." + esParts[2]},
		{"padded signature", esParts[0] + "." + esParts[1] + "." + esParts[2] + "=="},
		{"standard base64 alphabet", func() string {
			tok := es
			for !strings.ContainsAny(tok, "-_") { // the alphabets differ only there
				tok = sign(t, m, ES256, "at+jwt", claims)
			}
			return strings.NewReplacer("-", "+", "_", "/").Replace(tok)
		}()},
		{"space inside", esParts[0] + " ." + esParts[1] + "." + esParts[2]},
		{"newline at end", es + "\n"},
		{"leading space", " " + es},
		{"non-canonical base64 trailing bits", esParts[0] + "." + esParts[1] + "." + esParts[2][:len(esParts[2])-1] + "B"},
		{"JSON serialisation", `{"payload":"` + esParts[1] + `","protected":"` + esParts[0] + `","signature":"` + esParts[2] + `"}`},
		{"too large", esParts[0] + "." + strings.Repeat("A", MaxTokenSize) + "." + esParts[2]},
		{"binary", "\x00\xff.\x00.\x00"},
	}
	seen := map[string]string{}
	for _, tc := range cases {
		if prev, dup := seen[tc.token]; dup {
			t.Errorf("cases %q and %q build the same token", prev, tc.name)
		}
		seen[tc.token] = tc.name
		t.Run(tc.name, func(t *testing.T) {
			wantInvalid(t, m, tc.token, tc.name)
		})
	}
	// The originals still verify: the rejections are about the changes.
	mustVerify(t, m, es)
	mustVerify(t, m, rs)
}

// TestConcurrentUse signs and verifies on several goroutines while keys rotate and
// reload (run with -race).
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	m := e.started(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			alg := []string{ES256, RS256}[i%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok, err := m.Sign(alg, "at+jwt", claims)
				if err != nil {
					t.Error(err)
					return
				}
				if _, _, err := m.Verify(tok); err != nil {
					t.Errorf("a token signed a moment ago: %v", err)
					return
				}
				_ = m.JWKS()
			}
		})
	}
	for range 3 {
		if err := m.Rotate(t.Context(), ES256); err != nil {
			t.Error(err)
		}
		if err := m.Reload(t.Context()); err != nil {
			t.Error(err)
		}
	}
	if err := m.Rotate(t.Context(), RS256); err != nil {
		t.Error(err)
	}
	close(stop)
	wg.Wait()
}

// TestNoKeyMaterialInLogs checks every log line Init and Rotate write.
func TestNoKeyMaterialInLogs(t *testing.T) {
	e := newEnv(t)
	m := e.started(t)
	var pems []string
	for _, alg := range []string{ES256, RS256} {
		rec, _ := e.st.get(activeKID(t, m, alg))
		sec, err := e.sb.Get(t.Context(), rec.SecretPath, 0)
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, sec.Data[secretKeyPEM])
	}
	for _, alg := range []string{ES256, RS256} {
		if err := m.Rotate(t.Context(), alg); err != nil {
			t.Fatal(err)
		}
	}
	logs := e.logs.String()
	if logs == "" {
		t.Fatal("no logs written")
	}
	for _, p := range pems {
		lines := strings.Split(p, "\n")
		for _, line := range lines[1 : len(lines)-2] {
			if len(line) >= 32 && strings.Contains(logs, line[:32]) {
				t.Fatal("logs contain private key material")
			}
		}
	}
	if strings.Contains(logs, "PRIVATE KEY") {
		t.Fatal("logs mention a PEM private key")
	}
}

func TestDERRawConversion(t *testing.T) {
	for i := range 3000 {
		raw := make([]byte, 64)
		rand.Read(raw)
		// Vary the number of leading zero bytes and the high bit of each half.
		for h := range 2 {
			half := raw[h*32 : (h+1)*32]
			zeros := (i >> (2 * h)) % 5
			if zeros == 4 {
				zeros = 31 // a one-byte integer
			}
			clear(half[:zeros])
			if (i>>(4+h))&1 == 1 && zeros == 0 {
				half[0] |= 0x80
			}
		}
		der := rawToDER(raw, nil)
		want := asn1Sig(raw)
		if !bytes.Equal(der, want) {
			t.Fatalf("rawToDER(%x) = %x, encoding/asn1 says %x", raw, der, want)
		}
		back := make([]byte, 64)
		if err := derToRaw(der, back); err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("derToRaw(rawToDER(%x)) = %x, %v", raw, back, err)
		}
	}
	for name, der := range map[string]string{
		"empty":            "",
		"not a sequence":   "3106020101020101",
		"long form length": "308106020101020101",
		"length mismatch":  "3007020101020101",
		"one integer":      "3003020101",
		"three integers":   "3009020101020101020101",
		"trailing data":    "300602010102010100",
		"empty integer":    "30050200020101",
		"negative":         "3006020181020101",
		"non-minimal":      "300702020001020101",
		"too large":        "302502210100000000000000000000000000000000000000000000000000000000000000020101",
		"wrong tag":        "3006030101020101",
	} {
		b, _ := hex.DecodeString(der)
		if err := derToRaw(b, make([]byte, 64)); err == nil {
			t.Errorf("derToRaw accepted %s (%s)", name, der)
		}
	}
}

// withLowS returns tok with its ES256 signature's S replaced by the low one.
func withLowS(t testing.TB, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("not an ES256 signature: %v", err)
	}
	lowS(sig[32:])
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// withOtherS returns tok with its ES256 signature (r, s) replaced by (r, n − s), the
// other signature of the same message.
func withOtherS(t testing.TB, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	n := new(big.Int).SetBytes(p256N[:])
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(n, s).FillBytes(sig[32:])
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func TestP256Constants(t *testing.T) {
	n := elliptic.P256().Params().N
	if new(big.Int).SetBytes(p256N[:]).Cmp(n) != 0 {
		t.Fatal("p256N is not the order of P-256")
	}
	if new(big.Int).SetBytes(p256HalfN[:]).Cmp(new(big.Int).Rsh(n, 1)) != 0 {
		t.Fatal("p256HalfN is not n/2")
	}
}

func TestLowS(t *testing.T) {
	n := elliptic.P256().Params().N
	half := new(big.Int).Rsh(n, 1)
	edge := []*big.Int{big.NewInt(1), half, new(big.Int).Add(half, big.NewInt(1)), new(big.Int).Sub(n, big.NewInt(1))}
	for i := range 2000 {
		var s *big.Int
		if i < len(edge) {
			s = edge[i]
		} else {
			s, _ = rand.Int(rand.Reader, new(big.Int).Sub(n, big.NewInt(1)))
			s.Add(s, big.NewInt(1))
		}
		b := s.FillBytes(make([]byte, 32))
		lowS(b)
		want := s
		if s.Cmp(half) > 0 {
			want = new(big.Int).Sub(n, s)
		}
		if new(big.Int).SetBytes(b).Cmp(want) != 0 {
			t.Fatalf("lowS(%x) = %x, want %x", s, b, want)
		}
	}
}

// TestSignaturesNotMalleable: Sign writes low S only, and the other S — a valid ECDSA
// signature that go-jose accepts — is refused, so no second token string exists.
func TestSignaturesNotMalleable(t *testing.T) {
	m := newEnv(t).started(t)
	var set jose.JSONWebKeySet
	json.Unmarshal(m.JWKS(), &set)
	jwk := set.Key(activeKID(t, m, ES256))[0]
	for range 200 {
		tok := sign(t, m, ES256, "at+jwt", claims)
		if withLowS(t, tok) != tok {
			t.Fatal("Sign wrote a high-S signature")
		}
		twin := withOtherS(t, tok)
		jws, err := jose.ParseSignedCompact(twin, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify(&jwk); err != nil {
			t.Fatalf("the (r, n-s) twin should be a valid ECDSA signature: %v", err)
		}
		wantInvalid(t, m, twin, "the high-S twin of a valid token")
	}
}

// A verified token is answered from the cache, but only while its key is usable, and
// only for the exact bytes that verified.
func TestVerifyCache(t *testing.T) {
	e := newEnv(t)
	m := e.started(t)
	tok := sign(t, m, ES256, "at+jwt", claims)
	first := mustVerify(t, m, tok)
	if n := m.verified.len(); n != 1 {
		t.Fatalf("cache holds %d tokens after one verification, want 1", n)
	}
	if again := mustVerify(t, m, tok); !bytes.Equal(again, first) {
		t.Fatalf("cached payload %q, want %q", again, first)
	}
	parts := strings.Split(tok, ".")
	sig := []byte(parts[2])
	sig[5] ^= 1
	wantInvalid(t, m, parts[0]+"."+parts[1]+"."+string(sig), "a cached token with one signature byte changed")
	wantInvalid(t, m, tok+".", "a cached token with a trailing dot")

	// Rotate, then let the old key pass its NotAfter: the cached token stops verifying.
	if err := m.Rotate(t.Context(), ES256); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, m, tok)
	e.clock.Advance(e.ttl)
	wantInvalid(t, m, tok, "a cached token whose key passed NotAfter")

	// The cache is bounded.
	for range maxVerified + 10 {
		mustVerify(t, m, sign(t, m, ES256, "at+jwt", claims))
	}
	if n := m.verified.len(); n > maxVerified {
		t.Errorf("cache holds %d tokens, more than %d", n, maxVerified)
	}
}
