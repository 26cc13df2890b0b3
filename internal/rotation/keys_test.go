package rotation_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/keys"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/rotation"
	"github.com/lanyardhq/lanyard/internal/store"
)

const week = 7 * 24 * time.Hour

func keyRotation(o *rotation.Options) { o.KeyEvery, o.PublishAhead = week, time.Hour }

// TestScheduledSigningKeyRotation: the new key is in the JWKS for PublishAhead before it
// signs; then it signs, and the old key stays published until its tokens expired.
func TestScheduledSigningKeyRotation(t *testing.T) {
	backends(t, func(t *testing.T, mk func(t *testing.T) *env) {
		e := mk(t)
		in := e.start(t, "a", keyRotation)
		id, s := in.registerSecret(t, "svc")
		_, k1 := in.token(t, id, s)
		if k1 == "" {
			t.Fatal("no token")
		}
		e.clock.Advance(week - time.Hour + time.Second)
		if _, err := in.eng.TickHeld(t.Context()); err != nil {
			t.Fatal(err)
		}
		open := e.openRotations(t)
		if len(open) != 1 || open[0].Kind != store.RotationSigningKey || open[0].Step != store.StepNext {
			t.Fatalf("open = %+v, want a signing key rotation at next", open)
		}
		k2 := open[0].NewRef
		if jwks := in.jwksKIDs(t); !jwks[k1] || !jwks[k2] {
			t.Fatalf("JWKS %v does not publish both the active and the next key", jwks)
		}
		if _, kid := in.token(t, id, s); kid != k1 {
			t.Fatalf("token signed by %s before the publish-ahead period ended, want %s", kid, k1)
		}
		e.clock.Advance(time.Hour)
		if _, err := in.eng.TickHeld(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, kid := in.token(t, id, s); kid != k2 {
			t.Fatalf("token signed by %s after activation, want %s", kid, k2)
		}
		if jwks := in.jwksKIDs(t); !jwks[k1] || !jwks[k2] {
			t.Fatalf("JWKS %v dropped the retired key while its tokens are valid", jwks)
		}
		e.clock.Advance(time.Hour + time.Second) // MaxTokenTTL after retirement
		if jwks := in.jwksKIDs(t); jwks[k1] || !jwks[k2] {
			t.Fatalf("JWKS %v after every token of the retired key expired", jwks)
		}
		st, err := in.eng.SigningKeyStatus(t.Context())
		if err != nil || len(st) != 1 || st[0].KID != k2 || !st[0].InPolicy || st[0].NextDueAt == nil {
			t.Fatalf("SigningKeyStatus = %+v, %v", st, err)
		}
		if n := e.auditTypes(t)["signing_key.rotated"]; n != 1 {
			t.Errorf("%d signing_key.rotated events", n)
		}
		// The retired key's private half is gone from the backend.
		if _, err := e.sb.Get(t.Context(), keys.SecretPathPrefix, 0); err == nil {
			t.Log("unexpected secret at the prefix")
		}
	})
}

// TestSigningKeyRotationFaults stops or fails every step of a signing key rotation and
// checks that tokens are issued throughout, signed by a published key, and that a
// restart completes the rotation.
func TestSigningKeyRotationFaults(t *testing.T) {
	type fault struct {
		name          string
		inject, clear func(in *instance, e *env)
	}
	stopAt := func(p string) fault {
		return fault{"stop at " + p, func(in *instance, _ *env) { in.stopAt(p) }, func(in *instance, _ *env) { in.stopAt("") }}
	}
	faults := []fault{
		stopAt("signing_key.after_store"),
		stopAt("signing_key.after_next"),
		stopAt("signing_key.after_activate"),
		{"secrets backend write fails", func(_ *instance, e *env) { e.sb.failPut.Store(true) }, func(_ *instance, e *env) { e.sb.failPut.Store(false) }},
		{"database commit of the key fails", func(_ *instance, e *env) { e.st.failCreateKey.Store(true) }, func(_ *instance, e *env) { e.st.failCreateKey.Store(false) }},
		{"database commit of the step fails", func(_ *instance, e *env) { e.st.failUpdateRotation.Store(true) }, func(_ *instance, e *env) { e.st.failUpdateRotation.Store(false) }},
	}
	backends(t, func(t *testing.T, mk func(t *testing.T) *env) {
		for _, f := range faults {
			t.Run(f.name, func(t *testing.T) {
				e := mk(t)
				in := e.start(t, "a", keyRotation)
				id, s := in.registerSecret(t, "svc")
				_, k1 := in.token(t, id, s)
				e.clock.Advance(week - time.Hour + time.Second)
				f.inject(in, e)
				// Immediate, so that every step runs in this one call.
				if _, err := in.eng.RotateSigningKey(t.Context(), "admin", keys.ES256, lifecycle.CauseManual, true); err == nil {
					t.Fatal("rotation succeeded despite the fault")
				}
				code, kid := in.token(t, id, s)
				if code != http.StatusOK || !in.jwksKIDs(t)[kid] {
					t.Fatalf("after the fault: HTTP %d, kid %s published: %v", code, kid, in.jwksKIDs(t)[kid])
				}
				f.clear(in, e)

				in2 := e.start(t, "a", keyRotation)
				e.clock.Advance(time.Hour + time.Minute)
				if _, err := in2.eng.TickHeld(t.Context()); err != nil {
					t.Fatalf("Tick after restart: %v", err)
				}
				if open := e.openRotations(t); len(open) != 0 {
					// A rotation resumed from "started" publishes first and activates a
					// publish-ahead period later.
					e.clock.Advance(time.Hour + time.Minute)
					if _, err := in2.eng.TickHeld(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
				list, _ := e.st.ListRotations(t.Context(), store.RotationSigningKey, keys.ES256, 10)
				if len(list) != 1 || list[0].Step != store.StepDone {
					t.Fatalf("rotations = %+v, want one, done", list)
				}
				code, kid = in2.token(t, id, s)
				if code != http.StatusOK || kid == k1 || kid != list[0].NewRef {
					t.Fatalf("after the restart: HTTP %d, signed by %s (old %s, new %s)", code, kid, k1, list[0].NewRef)
				}
				if jwks := in2.jwksKIDs(t); !jwks[kid] {
					t.Fatalf("JWKS %v does not publish the signing key", jwks)
				}
				recs, _ := e.st.ListSigningKeys(t.Context())
				active := 0
				for _, r := range recs {
					if r.Alg == keys.ES256 && r.State == store.KeyActive {
						active++
					}
					if r.KID == k1 && (r.State != store.KeyRetired || r.NotAfter == nil) {
						t.Errorf("old key is %s, want retired with a NotAfter", r.State)
					}
				}
				if active != 1 {
					t.Errorf("%d active keys", active)
				}
			})
		}
	})
}

// TestVaultOutage stops Vault (the proxy in front of it): tokens keep being issued from
// the keys and hashes held in memory and in the database, the due rotation fails with a
// recorded, audited, backed-off retry, and completes when Vault is back.
func TestVaultOutage(t *testing.T) {
	e := newEnv(t, "vault")
	in := e.start(t, "a", keyRotation)
	id, s1 := in.registerSecret(t, "svc")
	in.setPolicy(t, id, time.Hour, time.Hour)
	e.clock.Advance(time.Hour + time.Second)

	e.proxy.Down()
	if err := e.sb.Ping(t.Context()); err == nil {
		t.Fatal("Ping succeeded with Vault down")
	}
	for range 3 {
		if code, kid := in.token(t, id, s1); code != http.StatusOK || kid == "" {
			t.Fatalf("token with Vault down: HTTP %d", code)
		}
	}
	if _, err := in.eng.TickHeld(t.Context()); err == nil {
		t.Fatal("rotation succeeded with Vault down")
	}
	open := e.openRotations(t)
	if len(open) != 1 || open[0].Attempts != 1 || open[0].NotBefore == nil {
		t.Fatalf("open = %+v", open)
	}
	if n := e.auditTypes(t)["rotation.step_failed"]; n != 1 {
		t.Fatalf("%d rotation.step_failed events", n)
	}
	// A registration while Vault is down is refused cleanly and leaves nothing behind.
	_, err := in.svc.Register(t.Context(), "admin", lifecycle.RegisterRequest{Name: "new", Namespace: "prod", Owner: "x",
		Credential: &lifecycle.CredentialRequest{Type: store.CredentialClientSecret}})
	if _, ok := err.(*lifecycle.UnavailableError); !ok {
		t.Fatalf("register with Vault down = %v, want UnavailableError", err)
	}
	if _, err := e.st.GetAgentByName(t.Context(), "prod", "new"); err == nil {
		t.Fatal("agent created although its secret could not be stored")
	}

	if err := e.proxy.Up(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if _, err := in.eng.TickHeld(t.Context()); err != nil {
		t.Fatalf("Tick after Vault came back: %v", err)
	}
	s2, v := e.latestSecret(t, "svc")
	if v != 2 {
		t.Fatalf("version %d", v)
	}
	for _, s := range []string{s1, s2} {
		if code, _ := in.token(t, id, s); code != http.StatusOK {
			t.Errorf("token after recovery: HTTP %d", code)
		}
	}
}
