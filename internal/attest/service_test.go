package attest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// The service's own rules, on a controlled clock and the real SQLite store: nonce
// lifetime and single use, verdict lifetimes, the audit event, suspension on mismatch,
// and what is malformed rather than contraindicated.

var (
	model  = "sha256:" + strings.Repeat("1a", 32)
	prompt = "sha256:" + strings.Repeat("2b", 32)
)

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
	fail   error
}

func (r *recorder) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, e)
	return nil
}

type suspender struct{ calls []string }

func (s *suspender) Transition(_ context.Context, actor, id string, action lifecycle.Action, reason string) (*lifecycle.Agent, error) {
	s.calls = append(s.calls, string(action)+" "+id+" by "+actor+": "+reason)
	return nil, nil
}

type signer struct{}

func (signer) Sign(alg, typ string, payload []byte) (string, error) { return alg + "." + typ, nil }

type fixture struct {
	svc   *attest.Service
	st    store.Store
	now   time.Time
	audit *recorder
	lc    *suspender
}

func newFixture(t *testing.T, opts attest.Options) *fixture {
	f := &fixture{st: storetest.OpenSQLite(t), now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), audit: &recorder{}, lc: &suspender{}}
	opts.Now = func() time.Time { return f.now }
	f.svc = attest.New(f.st, f.audit, f.lc, signer{}, opts)
	return f
}

// agent stores an agent with the reference ref (and attestation_ttl ttl, 0 for the
// default).
func (f *fixture) agent(t *testing.T, ref lifecycle.Reference, ttl time.Duration) *store.Agent {
	t.Helper()
	b, _ := json.Marshal(ref)
	a := &store.Agent{ID: "agt_1", ClientID: "agt_1", Name: "a", Namespace: "ns", Owner: "o", RiskLevel: "low",
		Status: store.StatusActive, CredentialType: store.CredentialClientSecret, TokenAlg: "ES256",
		Reference: b, AttestationTTLSeconds: int64(ttl / time.Second), CreatedAt: f.now, UpdatedAt: f.now}
	cred := &store.Credential{ID: "crd_1", AgentID: a.ID, Type: store.CredentialClientSecret, State: store.CredentialActive,
		SecretHash: []byte("h"), CreatedAt: f.now}
	if err := f.st.CreateAgent(t.Context(), a, cred); err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *fixture) attest(t *testing.T, a *store.Agent, nonce string, m map[string]string) *attest.Result {
	t.Helper()
	raw, _ := json.Marshal(m)
	r, err := f.svc.Attest(t.Context(), a, &attest.Evidence{Nonce: nonce, Measurements: raw})
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	return r
}

func (f *fixture) challenge(t *testing.T, a *store.Agent) string {
	t.Helper()
	n, exp, err := f.svc.Challenge(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	if want := f.now.Add(time.Minute); !exp.Equal(want) {
		t.Errorf("challenge expires %s, want %s", exp, want)
	}
	return n
}

func failed(r *attest.Result) map[string]string {
	out := map[string]string{}
	for _, c := range r.Checks {
		if c.Outcome == attest.Fail {
			out[c.Name] = c.Detail
		}
	}
	return out
}

func TestNonceLifetime(t *testing.T) {
	f := newFixture(t, attest.Options{})
	a := f.agent(t, lifecycle.Reference{ModelDigest: model}, 0)
	m := map[string]string{"model_digest": model}

	n := f.challenge(t, a)
	f.now = f.now.Add(59 * time.Second)
	if r := f.attest(t, a, n, m); r.Status != store.AttestationAffirming {
		t.Fatalf("nonce used after 59s: %s %v", r.Status, failed(r))
	}

	n = f.challenge(t, a)
	f.now = f.now.Add(time.Minute)
	r := f.attest(t, a, n, m)
	if d := failed(r)["nonce"]; !strings.HasPrefix(d, "nonce expired at ") || len(failed(r)) != 1 {
		t.Fatalf("nonce used after 60s: failed %v", failed(r))
	}
	// Burnt by the failed attempt too: an expired nonce cannot be retried.
	if d := failed(f.attest(t, a, n, m))["nonce"]; d != "nonce was never issued or was already used" {
		t.Fatalf("expired nonce reused: %q", d)
	}
	for _, bad := range []string{"", "not base64!", strings.Repeat("A", 42)} {
		if d := failed(f.attest(t, a, bad, m))["nonce"]; !strings.Contains(d, "32 bytes") {
			t.Errorf("nonce %q: %q", bad, d)
		}
	}
}

func TestVerdictLifetimeAndAudit(t *testing.T) {
	f := newFixture(t, attest.Options{DefaultTTL: 7 * time.Minute})
	var notified []string
	f.svc.OnResult(func(id string) { notified = append(notified, id) })

	a := f.agent(t, lifecycle.Reference{ModelDigest: model, PromptDigest: prompt}, 0)
	ok := f.attest(t, a, f.challenge(t, a), map[string]string{"model_digest": model, "prompt_digest": prompt})
	if ok.Status != store.AttestationAffirming || !ok.ExpiresAt.Equal(f.now.Add(7*time.Minute)) || ok.Host != "none" {
		t.Fatalf("affirming verdict: %s expires %s host %s, want affirming at now+7m (the default), host none", ok.Status, ok.ExpiresAt, ok.Host)
	}
	a.AttestationTTLSeconds = 120
	if r := f.attest(t, a, f.challenge(t, a), map[string]string{"model_digest": model, "prompt_digest": prompt}); !r.ExpiresAt.Equal(f.now.Add(2 * time.Minute)) {
		t.Fatalf("agent's attestation_ttl 2m: expires %s", r.ExpiresAt)
	}

	bad := f.attest(t, a, f.challenge(t, a), map[string]string{"model_digest": model, "prompt_digest": "sha256:" + strings.Repeat("ff", 32)})
	if bad.Status != store.AttestationContraindicated || !bad.ExpiresAt.Equal(f.now) {
		t.Fatalf("contraindicated verdict: %s expires %s, want contraindicated expiring at once", bad.Status, bad.ExpiresAt)
	}
	c := failed(bad)
	if len(c) != 1 || c["measurements.prompt"] == "" {
		t.Fatalf("failed %v, want measurements.prompt alone", c)
	}
	for _, ch := range bad.Checks {
		if ch.Name == "measurements.prompt" && (ch.Expected != prompt || ch.Actual != "sha256:"+strings.Repeat("ff", 32)) {
			t.Errorf("check %+v: want expected and actual side by side", ch)
		}
	}
	if len(notified) != 3 {
		t.Errorf("OnResult ran %d times, want 3", len(notified))
	}
	if len(f.lc.calls) != 0 {
		t.Errorf("on_mismatch unset, yet %v", f.lc.calls)
	}

	ev := f.audit.events[len(f.audit.events)-1]
	if ev.Type != "attestation.verified" || ev.Outcome != "failure" || ev.Reason != "failed checks: measurements.prompt" || ev.AgentID != a.ID {
		t.Errorf("audit event %+v", ev)
	}
	list, err := f.svc.List(t.Context(), a.ID, 10)
	if err != nil || len(list) != 3 || list[0].ID != bad.ID || len(list[0].Checks) == 0 {
		t.Fatalf("List = %d results (newest %v), err %v", len(list), list, err)
	}
}

func TestSuspendOnMismatch(t *testing.T) {
	f := newFixture(t, attest.Options{})
	a := f.agent(t, lifecycle.Reference{ModelDigest: model, OnMismatch: "suspend"}, 0)
	r := f.attest(t, a, f.challenge(t, a), map[string]string{"model_digest": prompt})
	if len(f.lc.calls) != 1 || !strings.HasPrefix(f.lc.calls[0], "suspend agt_1 by system: attestation "+r.ID+" contraindicated: measurements.model") {
		t.Fatalf("suspensions %v", f.lc.calls)
	}
}

// Evidence that cannot be verified at all is an error (HTTP 400), not a verdict; an
// outage is an error too, and never suspends the agent.
func TestMalformedAndOutage(t *testing.T) {
	f := newFixture(t, attest.Options{})
	a := f.agent(t, lifecycle.Reference{ModelDigest: model, OnMismatch: "suspend"}, 0)
	for _, m := range []string{``, `null`, `{"model_digest":"x","weights":"y"}`, `[1]`} {
		_, err := f.svc.Attest(t.Context(), a, &attest.Evidence{Nonce: f.challenge(t, a), Measurements: json.RawMessage(m)})
		if !errors.Is(err, attest.ErrMalformed) {
			t.Errorf("measurements %q: err %v, want ErrMalformed", m, err)
		}
	}

	f.audit.fail = errors.New("database is down")
	if _, err := f.svc.Attest(t.Context(), a, &attest.Evidence{Nonce: f.challenge(t, a), Measurements: json.RawMessage(`{"model_digest":"` + model + `"}`)}); err == nil {
		t.Fatal("a verdict that could not be audited was returned")
	}
	f.audit.fail = nil

	n := f.challenge(t, a)
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the store refuses every call
	if _, err := f.svc.Attest(ctx, a, &attest.Evidence{Nonce: n, Measurements: json.RawMessage(`{"model_digest":"` + model + `"}`)}); err == nil || errors.Is(err, attest.ErrMalformed) {
		t.Fatalf("store outage: err %v, want an internal error", err)
	}
	if len(f.lc.calls) != 0 {
		t.Fatalf("an outage suspended the agent: %v", f.lc.calls)
	}
}

// Without a Sigstore verifier configured, an agent whose policy names signers gets a
// clear failed check rather than a pass.
func TestSigstoreNotConfigured(t *testing.T) {
	f := newFixture(t, attest.Options{})
	a := f.agent(t, lifecycle.Reference{ModelDigest: model, Sigstore: []lifecycle.SigstoreReference{{Issuer: "https://a.example", Subject: "x"}}}, 0)
	r := f.attest(t, a, f.challenge(t, a), map[string]string{"model_digest": model})
	if d := failed(r)["sigstore"]; !strings.Contains(d, "not configured") || r.Host != "sigstore" {
		t.Fatalf("failed %v host %s", failed(r), r.Host)
	}
}

// One client may hold a bounded number of unexpired challenges; using or outliving one
// frees its place.
func TestOutstandingChallenges(t *testing.T) {
	f := newFixture(t, attest.Options{MaxOutstanding: 3})
	a := f.agent(t, lifecycle.Reference{ModelDigest: model}, 0)
	var nonces []string
	for range 3 {
		nonces = append(nonces, f.challenge(t, a))
	}
	if _, _, err := f.svc.Challenge(t.Context(), a); !errors.Is(err, attest.ErrTooManyChallenges) {
		t.Fatalf("fourth challenge: err %v, want ErrTooManyChallenges", err)
	}
	f.attest(t, a, nonces[0], map[string]string{"model_digest": model})
	f.challenge(t, a)
	f.now = f.now.Add(time.Minute)
	for range 3 {
		f.challenge(t, a)
	}
}
