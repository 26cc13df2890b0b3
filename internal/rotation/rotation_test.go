package rotation_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/rotation"
	"github.com/lanyardhq/lanyard/internal/store"
)

// TestScheduledAgentRotation: a due credential is rotated by the scheduler; both
// credentials work during the grace, only the new one after it; the new secret is the
// latest version at the agent's path; the DB holds its hash, path and version.
func TestScheduledAgentRotation(t *testing.T) {
	backends(t, func(t *testing.T, mk func(t *testing.T) *env) {
		e := mk(t)
		in := e.start(t, "a", nil)
		id, s1 := in.registerSecret(t, "svc")
		if got, v := e.latestSecret(t, "svc"); got != s1 || v != 1 {
			t.Fatalf("backend holds version %d %q; registration returned %q", v, got, s1)
		}
		in.setPolicy(t, id, time.Hour, 30*time.Minute)
		if _, err := in.eng.TickHeld(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(e.openRotations(t)) != 0 {
			t.Fatal("a rotation started before the credential was due")
		}
		e.clock.Advance(time.Hour + time.Second)
		if held, err := in.eng.TickHeld(t.Context()); err != nil || !held {
			t.Fatalf("Tick = %v, %v", held, err)
		}
		s2, v := e.latestSecret(t, "svc")
		if s2 == s1 || v != 2 {
			t.Fatalf("after rotation the backend holds version %d (same secret: %v)", v, s2 == s1)
		}
		for name, s := range map[string]string{"old": s1, "new": s2} {
			if code, _ := in.token(t, id, s); code != http.StatusOK {
				t.Errorf("%s secret during grace: HTTP %d", name, code)
			}
		}
		a, _ := in.svc.Get(t.Context(), id)
		if a.Credentials[0].SecretVersion != 2 || a.Credentials[0].SecretPath != "lanyard/agents/prod/svc" || a.Credentials[0].State != store.CredentialActive {
			t.Fatalf("active credential = %+v", a.Credentials[0])
		}
		st, err := in.eng.AgentStatus(t.Context(), id, a.Credentials)
		if err != nil || st.Source != "agent" || !st.InPolicy || st.NextDueAt == nil || !st.NextDueAt.Equal(st.LastRotatedAt.Add(time.Hour)) {
			t.Fatalf("AgentStatus = %+v, %v", st, err)
		}
		e.clock.Advance(31 * time.Minute)
		if _, err := in.eng.TickHeld(t.Context()); err != nil {
			t.Fatal(err)
		}
		if code, _ := in.token(t, id, s1); code != http.StatusUnauthorized {
			t.Errorf("old secret after grace: HTTP %d, want 401", code)
		}
		if code, _ := in.token(t, id, s2); code != http.StatusOK {
			t.Errorf("new secret after grace: HTTP %d", code)
		}
		a, _ = in.svc.Get(t.Context(), id)
		if len(a.Credentials) != 1 {
			t.Errorf("retired credential not deleted: %d credentials", len(a.Credentials))
		}
		list, _ := e.st.ListRotations(t.Context(), store.RotationAgentCredential, id, 10)
		if len(list) != 1 || list[0].Step != store.StepDone || list[0].Cause != "scheduled" {
			t.Fatalf("rotations = %+v", list)
		}
		types := e.auditTypes(t)
		for _, want := range []string{"credential.rotation_started", "credential.rotated", "credential.retired"} {
			if types[want] != 1 {
				t.Errorf("audit has %d %s events, want 1", types[want], want)
			}
		}
		c, err := in.eng.Compliance(t.Context())
		if err != nil || c.AgentCredential.Total != 1 || c.AgentCredential.Ratio != 1 {
			t.Fatalf("Compliance = %+v, %v", c, err)
		}
	})
}

// TestAgentRotationFaults injects a failure between every pair of steps — the process
// stopping, the secrets backend failing, the database failing to commit — and checks
// that the agent can always get a token with its old credential or its new one (the
// one its runtime reads from the backend once the rotation is recorded), that a
// restart completes the rotation, and that nothing is duplicated: the new credential
// is exactly one new version in the backend.
func TestAgentRotationFaults(t *testing.T) {
	type fault struct {
		name   string
		inject func(in *instance, e *env)
		clear  func(in *instance, e *env)
	}
	stopAt := func(p string) fault {
		return fault{"stop at " + p, func(in *instance, _ *env) { in.stopAt(p) }, func(in *instance, _ *env) { in.stopAt("") }}
	}
	faults := []fault{
		stopAt("credential.before_store"),
		stopAt("credential.after_store"),
		stopAt("credential.before_activate"),
		stopAt("credential.after_activate"),
		{"secrets backend write fails", func(_ *instance, e *env) { e.sb.failPut.Store(true) }, func(_ *instance, e *env) { e.sb.failPut.Store(false) }},
		{"secrets backend read fails", func(_ *instance, e *env) { e.sb.failGet.Store(true) }, func(_ *instance, e *env) { e.sb.failGet.Store(false) }},
		{"database commit of the credential fails", func(_ *instance, e *env) { e.st.failRotate.Store(true) }, func(_ *instance, e *env) { e.st.failRotate.Store(false) }},
		{"database commit of the step fails", func(_ *instance, e *env) { e.st.failUpdateRotation.Store(true) }, func(_ *instance, e *env) { e.st.failUpdateRotation.Store(false) }},
	}
	backends(t, func(t *testing.T, mk func(t *testing.T) *env) {
		for _, f := range faults {
			t.Run(f.name, func(t *testing.T) {
				e := mk(t)
				in := e.start(t, "a", nil)
				id, s1 := in.registerSecret(t, "svc")
				in.setPolicy(t, id, time.Hour, 30*time.Minute)
				e.clock.Advance(time.Hour + time.Second)

				f.inject(in, e)
				_, err := in.eng.TickHeld(t.Context())
				if err == nil {
					t.Fatal("Tick succeeded despite the fault")
				}
				// At this point the agent still gets tokens: with the old secret, and with
				// the new one if the rotation got far enough to record it.
				code1, _ := in.token(t, id, s1)
				latest, _ := e.latestSecret(t, "svc")
				code2, _ := in.token(t, id, latest)
				if code1 != http.StatusOK {
					t.Fatalf("old secret after the fault: HTTP %d", code1)
				}
				f.clear(in, e)

				// Restart: a new instance over the same database and backend, after any
				// backoff, completes the rotation.
				in2 := e.start(t, "a", nil)
				e.clock.Advance(10 * time.Minute)
				if _, err := in2.eng.TickHeld(t.Context()); err != nil {
					t.Fatalf("Tick after restart: %v", err)
				}
				s2, version := e.latestSecret(t, "svc")
				if version != 2 {
					t.Errorf("backend holds %d versions; the rotation wrote a duplicate", version)
				}
				for name, s := range map[string]string{"old": s1, "new": s2} {
					if code, _ := in2.token(t, id, s); code != http.StatusOK {
						t.Errorf("%s secret after the restart: HTTP %d", name, code)
					}
				}
				if code2 == http.StatusOK && latest != s1 && latest != s2 {
					t.Errorf("the secret that worked before the restart is not the one kept")
				}
				open := e.openRotations(t)
				if len(open) != 1 || open[0].Step != store.StepActive {
					t.Fatalf("after restart: open rotations %+v, want one in its grace period", open)
				}
				e.clock.Advance(31 * time.Minute) // past the grace, before the next rotation is due
				if _, err := in2.eng.TickHeld(t.Context()); err != nil {
					t.Fatal(err)
				}
				if code, _ := in2.token(t, id, s1); code != http.StatusUnauthorized {
					t.Errorf("old secret after the grace: HTTP %d", code)
				}
				if code, _ := in2.token(t, id, s2); code != http.StatusOK {
					t.Errorf("new secret after the grace: HTTP %d", code)
				}
				list, _ := e.st.ListRotations(t.Context(), store.RotationAgentCredential, id, 10)
				if len(list) != 1 || list[0].Step != store.StepDone {
					t.Errorf("rotations = %+v; want exactly one, done", list)
				}
				a, _ := in2.svc.Get(t.Context(), id)
				if len(a.Credentials) != 1 || a.Credentials[0].SecretVersion != 2 {
					t.Errorf("credentials = %+v", a.Credentials)
				}
			})
		}
	})
}

// TestFailedStepIsAuditedAndRetriedWithBackoff: a failing backend write is recorded on
// the rotation (attempts, error, next attempt), audited, and retried only after the
// backoff; the retry delay doubles.
func TestFailedStepIsAuditedAndRetriedWithBackoff(t *testing.T) {
	e := newEnv(t, "local")
	in := e.start(t, "a", nil)
	id, _ := in.registerSecret(t, "svc")
	in.setPolicy(t, id, time.Hour, time.Minute)
	e.clock.Advance(time.Hour + time.Second)
	e.sb.failPut.Store(true)
	in.eng.TickHeld(t.Context())
	open := e.openRotations(t)
	if len(open) != 1 || open[0].Attempts != 1 || !strings.Contains(open[0].LastError, "injected") || open[0].NotBefore == nil {
		t.Fatalf("after one failure: %+v", open)
	}
	first := open[0].NotBefore.Sub(e.clock.Now())
	in.eng.TickHeld(t.Context()) // inside the backoff: not retried
	if open := e.openRotations(t); open[0].Attempts != 1 {
		t.Fatalf("retried inside the backoff: attempts %d", open[0].Attempts)
	}
	e.clock.Advance(first)
	in.eng.TickHeld(t.Context())
	open = e.openRotations(t)
	if open[0].Attempts != 2 || open[0].NotBefore.Sub(e.clock.Now()) != 2*first {
		t.Fatalf("second failure: attempts %d, delay %v (first %v)", open[0].Attempts, open[0].NotBefore.Sub(e.clock.Now()), first)
	}
	if n := e.auditTypes(t)["rotation.step_failed"]; n != 2 {
		t.Errorf("%d rotation.step_failed audit events, want 2", n)
	}
	e.sb.failPut.Store(false)
	e.clock.Advance(time.Minute)
	if _, err := in.eng.TickHeld(t.Context()); err != nil {
		t.Fatal(err)
	}
	if open := e.openRotations(t); open[0].Step != store.StepActive || open[0].Attempts != 0 {
		t.Fatalf("after recovery: %+v", open[0])
	}
}

// TestManualRotation rotates through the API path (lifecycle.RotateCredential): the new
// secret is returned once and is the backend's latest version.
func TestManualRotation(t *testing.T) {
	backends(t, func(t *testing.T, mk func(t *testing.T) *env) {
		e := mk(t)
		in := e.start(t, "a", nil)
		id, s1 := in.registerSecret(t, "svc")
		res, err := in.svc.RotateCredential(t.Context(), "admin", id, lifecycle.RotateRequest{Grace: "10m"})
		if err != nil {
			t.Fatal(err)
		}
		latest, v := e.latestSecret(t, "svc")
		if res.ClientSecret == "" || res.ClientSecret != latest || v != 2 || res.RotationID == "" {
			t.Fatalf("manual rotation returned %q (latest %q, version %d)", res.ClientSecret, latest, v)
		}
		if !res.GraceUntil.Equal(e.clock.Now().Add(10 * time.Minute)) {
			t.Errorf("GraceUntil = %v", res.GraceUntil)
		}
		for _, s := range []string{s1, latest} {
			if code, _ := in.token(t, id, s); code != http.StatusOK {
				t.Errorf("token: HTTP %d", code)
			}
		}
		// A second manual rotation during the grace supersedes the first.
		res2, err := in.svc.RotateCredential(t.Context(), "admin", id, lifecycle.RotateRequest{Grace: "10m"})
		if err != nil {
			t.Fatal(err)
		}
		list, _ := e.st.ListRotations(t.Context(), store.RotationAgentCredential, id, 10)
		if len(list) != 2 || list[1].Step != store.StepSuperseded || list[0].Step != store.StepActive {
			t.Fatalf("rotations = %+v", list)
		}
		if code, _ := in.token(t, id, res2.ClientSecret); code != http.StatusOK {
			t.Errorf("newest secret: HTTP %d", code)
		}
	})
}

// TestGeneratedPrivateKeyJWT: "generate": true writes the key pair to the backend (PEM
// and JWK), the DB keeps the public JWKS, the agent authenticates with the key it reads,
// and a rotation replaces it.
func TestGeneratedPrivateKeyJWT(t *testing.T) {
	backends(t, func(t *testing.T, mk func(t *testing.T) *env) {
		e := mk(t)
		in := e.start(t, "a", nil)
		reg, err := in.svc.Register(t.Context(), "admin", lifecycle.RegisterRequest{
			Name: "keyed", Namespace: "prod", Owner: "team", AllowedScopes: []string{"read"},
			Credential: &lifecycle.CredentialRequest{Type: store.CredentialPrivateKeyJWT, Generate: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		id := reg.Agent.ID
		sec, err := e.sb.Get(t.Context(), lifecycle.AgentSecretPath("prod", "keyed"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(sec.Data["private_key_pem"], "BEGIN PRIVATE KEY") || sec.Data["private_key_pem"] != reg.PrivateKeyPEM ||
			sec.Data["kid"] == "" || sec.Data["client_id"] != id {
			t.Fatalf("stored key material incomplete: keys %v", len(sec.Data))
		}
		if strings.Contains(string(reg.Agent.Credentials[0].JWKS), `"d"`) {
			t.Fatal("the database holds private key material")
		}
		if code := in.tokenJWT(t, id, sec.Data["private_key_jwk"]); code != http.StatusOK {
			t.Fatalf("token with the generated key: HTTP %d", code)
		}
		res, err := in.svc.RotateCredential(t.Context(), "admin", id, lifecycle.RotateRequest{Grace: "0s"})
		if err != nil {
			t.Fatal(err)
		}
		sec2, _ := e.sb.Get(t.Context(), lifecycle.AgentSecretPath("prod", "keyed"), 0)
		if sec2.Version != 2 || sec2.Data["private_key_pem"] != res.PrivateKeyPEM || sec2.Data["kid"] == sec.Data["kid"] {
			t.Fatalf("rotation did not write a new key")
		}
		e.clock.Advance(time.Second)
		if code := in.tokenJWT(t, id, sec2.Data["private_key_jwk"]); code != http.StatusOK {
			t.Errorf("token with the rotated key: HTTP %d", code)
		}
		if code := in.tokenJWT(t, id, sec.Data["private_key_jwk"]); code != http.StatusUnauthorized {
			t.Errorf("token with the old key after a zero grace: HTTP %d", code)
		}
	})
}

// TestDecommissionDestroysSecret: decommissioning destroys the agent's secrets; if the
// backend is down it is retried by the scheduler.
func TestDecommissionDestroysSecret(t *testing.T) {
	backends(t, func(t *testing.T, mk func(t *testing.T) *env) {
		e := mk(t)
		in := e.start(t, "a", nil)
		id, _ := in.registerSecret(t, "gone")
		id2, _ := in.registerSecret(t, "later")
		if _, err := in.svc.Transition(t.Context(), "admin", id, lifecycle.Decommission, "done"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sb.Get(t.Context(), lifecycle.AgentSecretPath("prod", "gone"), 0); err == nil {
			t.Fatal("secret still readable after decommission")
		}
		if e.proxy == nil {
			return
		}
		e.proxy.Down()
		if _, err := in.svc.Transition(t.Context(), "admin", id2, lifecycle.Decommission, "done"); err != nil {
			t.Fatalf("decommission with Vault down: %v", err)
		}
		if n := e.auditTypes(t)["credential.destroy_failed"]; n != 1 {
			t.Fatalf("%d credential.destroy_failed events", n)
		}
		e.proxy.Up()
		in.eng.TickHeld(t.Context())
		if _, err := e.sb.Get(t.Context(), lifecycle.AgentSecretPath("prod", "later"), 0); err == nil {
			t.Fatal("secret not destroyed by the retry")
		}
		if left, _ := e.st.SecretDestroys(t.Context()); len(left) != 0 {
			t.Fatalf("pending destroys left: %v", left)
		}
	})
}

// TestRegistrationConflictDoesNotTouchTheExistingSecret: registering a taken name fails
// and leaves the existing agent's secret as it was.
func TestRegistrationConflictDoesNotTouchTheExistingSecret(t *testing.T) {
	e := newEnv(t, "local")
	in := e.start(t, "a", nil)
	_, s1 := in.registerSecret(t, "svc")
	_, err := in.svc.Register(t.Context(), "admin", lifecycle.RegisterRequest{
		Name: "svc", Namespace: "prod", Owner: "x", Credential: &lifecycle.CredentialRequest{Type: store.CredentialClientSecret}})
	var ce *lifecycle.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("duplicate registration = %v", err)
	}
	if got, v := e.latestSecret(t, "svc"); got != s1 || v != 1 {
		t.Fatalf("the existing agent's secret changed (version %d)", v)
	}
}

// TestLeaseTakeover: only the lease holder rotates; when it dies mid-rotation another
// replica takes over after the lease expires and completes the rotation.
func TestLeaseTakeover(t *testing.T) {
	e := newEnv(t, "local")
	a := e.start(t, "replica-a", nil)
	b := e.start(t, "replica-b", nil)
	id, s1 := a.registerSecret(t, "svc")
	a.setPolicy(t, id, time.Hour, time.Hour)
	e.clock.Advance(time.Hour + time.Second)

	a.stopAt("credential.after_store") // a dies right after writing the new secret
	if held, _ := a.eng.TickHeld(t.Context()); !held {
		t.Fatal("a did not get the free lease")
	}
	if held, err := b.eng.TickHeld(t.Context()); held || err != nil {
		t.Fatalf("b ran while a's lease was live: %v, %v", held, err)
	}
	if open := e.openRotations(t); len(open) != 1 || open[0].Step != store.StepStarted {
		t.Fatalf("open = %+v", open)
	}
	e.clock.Advance(2*time.Minute + time.Second) // a's lease expires unrenewed
	if held, err := b.eng.TickHeld(t.Context()); !held || err != nil {
		t.Fatalf("b did not take over: %v, %v", held, err)
	}
	open := e.openRotations(t)
	if len(open) != 1 || open[0].Step != store.StepActive {
		t.Fatalf("b did not complete a's rotation: %+v", open)
	}
	s2, v := e.latestSecret(t, "svc")
	if v != 2 {
		t.Fatalf("versions = %d: b wrote another secret instead of adopting a's", v)
	}
	for _, s := range []string{s1, s2} {
		if code, _ := b.token(t, id, s); code != http.StatusOK {
			t.Errorf("token: HTTP %d", code)
		}
	}
}

// TestStopErrorLeavesNoTrace makes sure a hook's ErrStop is not recorded as a failure
// (a crashed process records nothing).
func TestStopErrorLeavesNoTrace(t *testing.T) {
	e := newEnv(t, "local")
	in := e.start(t, "a", nil)
	id, _ := in.registerSecret(t, "svc")
	in.setPolicy(t, id, time.Hour, time.Hour)
	e.clock.Advance(time.Hour + time.Second)
	in.stopAt("credential.before_activate")
	if _, err := in.eng.TickHeld(t.Context()); !errors.Is(err, rotation.ErrStop) {
		t.Fatalf("Tick = %v, want ErrStop", err)
	}
	if open := e.openRotations(t); open[0].Attempts != 0 || open[0].LastError != "" {
		t.Fatalf("a stop was recorded as a failure: %+v", open[0])
	}
}

// TestComplianceCountsOverdueExternalCredentials: an agent that registered its own keys
// is not rotated by Lanyard, but with a policy it counts, and shows up as overdue in the
// figures and the metrics once its key is older than the interval.
func TestComplianceCountsOverdueExternalCredentials(t *testing.T) {
	e := newEnv(t, "local")
	in := e.start(t, "a", nil)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	reg, err := in.svc.Register(t.Context(), "admin", lifecycle.RegisterRequest{Name: "own-keys", Namespace: "prod", Owner: "x",
		Credential: &lifecycle.CredentialRequest{Type: store.CredentialPrivateKeyJWT, JWKS: set}})
	if err != nil {
		t.Fatal(err)
	}
	in.setPolicy(t, reg.Agent.ID, time.Hour, 0)
	secretID, _ := in.registerSecret(t, "managed")
	in.setPolicy(t, secretID, time.Hour, time.Minute)
	e.clock.Advance(2 * time.Hour)
	in.eng.TickHeld(t.Context()) // rotates the managed one; counts both as they were
	in.eng.TickHeld(t.Context())
	c, err := in.eng.Compliance(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c.AgentCredential.Total != 2 || c.AgentCredential.Overdue != 1 || c.AgentCredential.Ratio != 0.5 {
		t.Fatalf("compliance = %+v, want 1 of 2 overdue", c.AgentCredential)
	}
	if list, _ := e.st.ListRotations(t.Context(), store.RotationAgentCredential, reg.Agent.ID, 10); len(list) != 0 {
		t.Fatalf("an agent-supplied key was rotated: %+v", list)
	}
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(in.eng.Collectors()...)
	got, err := testutil.GatherAndCount(reg2, "lanyard_rotation_compliance_ratio")
	if err != nil || got != 2 {
		t.Fatalf("compliance metric series = %d, %v", got, err)
	}
	if v := agentRatio(t, reg2); v != 0.5 {
		t.Fatalf("lanyard_rotation_compliance_ratio{kind=agent_credential} = %v", v)
	}
}

// agentRatio returns lanyard_rotation_compliance_ratio{kind="agent_credential"} from reg.
func agentRatio(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lanyard_rotation_compliance_ratio" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == store.RotationAgentCredential {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatal("no agent_credential compliance series")
	return 0
}
