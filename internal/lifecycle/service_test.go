package lifecycle_test

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

var (
	allStates  = []string{store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusRevoked, store.StatusDecommissioned}
	allActions = []lifecycle.Action{lifecycle.Activate, lifecycle.Suspend, lifecycle.Resume, lifecycle.Revoke, lifecycle.Decommission}
)

// agentIn registers an agent and drives it into state through the service.
func (f *fixture) agentIn(t *testing.T, state string) *store.Agent {
	t.Helper()
	req := validRequest(t)
	req.Pending = state == store.StatusPending
	id := f.register(t, req).Agent.ID
	path := map[string][]lifecycle.Action{
		store.StatusSuspended:      {lifecycle.Suspend},
		store.StatusRevoked:        {lifecycle.Revoke},
		store.StatusDecommissioned: {lifecycle.Decommission},
	}[state]
	for _, act := range path {
		if _, err := f.svc.Transition(t.Context(), actor, id, act, "setup"); err != nil {
			t.Fatalf("setup %s: %v", act, err)
		}
	}
	a := f.agent(t, id)
	if a.Status != state {
		t.Fatalf("setup: agent is %s, want %s", a.Status, state)
	}
	f.takeChanges()
	return a
}

func TestTransitions(t *testing.T) {
	const (
		pending        = store.StatusPending
		active         = store.StatusActive
		suspended      = store.StatusSuspended
		revoked        = store.StatusRevoked
		decommissioned = store.StatusDecommissioned
	)
	tests := []struct {
		from   string
		action lifecycle.Action
		to     string // "" when the transition is refused
		event  string
	}{
		{pending, lifecycle.Activate, active, "agent.activated"},
		{pending, lifecycle.Suspend, "", ""},
		{pending, lifecycle.Resume, "", ""},
		{pending, lifecycle.Revoke, "", ""},
		{pending, lifecycle.Decommission, decommissioned, "agent.decommissioned"},

		{active, lifecycle.Activate, "", ""},
		{active, lifecycle.Suspend, suspended, "agent.suspended"},
		{active, lifecycle.Resume, "", ""},
		{active, lifecycle.Revoke, revoked, "agent.revoked"},
		{active, lifecycle.Decommission, decommissioned, "agent.decommissioned"},

		{suspended, lifecycle.Activate, "", ""},
		{suspended, lifecycle.Suspend, "", ""},
		{suspended, lifecycle.Resume, active, "agent.resumed"},
		{suspended, lifecycle.Revoke, revoked, "agent.revoked"},
		{suspended, lifecycle.Decommission, decommissioned, "agent.decommissioned"},

		{revoked, lifecycle.Activate, "", ""},
		{revoked, lifecycle.Suspend, "", ""},
		{revoked, lifecycle.Resume, "", ""},
		{revoked, lifecycle.Revoke, "", ""},
		{revoked, lifecycle.Decommission, decommissioned, "agent.decommissioned"},

		{decommissioned, lifecycle.Activate, "", ""},
		{decommissioned, lifecycle.Suspend, "", ""},
		{decommissioned, lifecycle.Resume, "", ""},
		{decommissioned, lifecycle.Revoke, "", ""},
		{decommissioned, lifecycle.Decommission, "", ""},
	}
	// The table must cover every (state, action) pair exactly once.
	covered := map[string]int{}
	for _, tt := range tests {
		covered[tt.from+"/"+string(tt.action)]++
	}
	for _, s := range allStates {
		for _, a := range allActions {
			if n := covered[s+"/"+string(a)]; n != 1 {
				t.Errorf("table covers %s/%s %d times, want 1", s, a, n)
			}
		}
	}

	f := newFixture(t)
	for _, tt := range tests {
		t.Run(tt.from+"/"+string(tt.action), func(t *testing.T) {
			before := f.agentIn(t, tt.from)
			credsBefore := f.credentials(t, before.ID)
			eventsBefore := f.auditOf(t, before.ID)
			f.clock.Advance(time.Minute) // so a new TokensNotBefore differs from any earlier one
			now := f.clock.Now()

			got, err := f.svc.Transition(t.Context(), actor, before.ID, tt.action, "ticket 42")
			after := f.agent(t, before.ID)
			events := f.auditOf(t, before.ID)
			changes := f.takeChanges()

			if tt.to == "" {
				var te *lifecycle.TransitionError
				if !errors.As(err, &te) {
					t.Fatalf("Transition = %v, %v; want *TransitionError", got, err)
				}
				if te.Action != string(tt.action) || te.From != tt.from {
					t.Errorf("TransitionError = %+v, want action %s from %s", te, tt.action, tt.from)
				}
				if after.Status != before.Status || after.Generation != before.Generation || after.StatusReason != before.StatusReason {
					t.Errorf("refused transition changed the agent: status %s→%s, generation %d→%d, reason %q→%q",
						before.Status, after.Status, before.Generation, after.Generation, before.StatusReason, after.StatusReason)
				}
				if !sameTime(after.TokensNotBefore, before.TokensNotBefore) {
					t.Errorf("refused transition changed TokensNotBefore: %v → %v", before.TokensNotBefore, after.TokensNotBefore)
				}
				if len(events) != len(eventsBefore) {
					t.Errorf("refused transition wrote %d audit events", len(events)-len(eventsBefore))
				}
				if len(f.credentials(t, before.ID)) != len(credsBefore) {
					t.Error("refused transition changed the credentials")
				}
				if len(changes) != 0 {
					t.Errorf("OnChange called %d times for a refused transition", len(changes))
				}
				return
			}

			if err != nil {
				t.Fatalf("Transition: %v", err)
			}
			if got.Status != tt.to || after.Status != tt.to {
				t.Errorf("status: returned %s, stored %s; want %s", got.Status, after.Status, tt.to)
			}
			if after.StatusReason != "ticket 42" {
				t.Errorf("StatusReason = %q, want the reason given", after.StatusReason)
			}
			if after.Generation <= before.Generation {
				t.Errorf("Generation %d → %d; want it to increase", before.Generation, after.Generation)
			}

			// Cutting off tokens: suspend, revoke and decommission set TokensNotBefore
			// to now; the other actions leave it alone (a resume does not revive tokens).
			switch tt.action {
			case lifecycle.Suspend, lifecycle.Revoke, lifecycle.Decommission:
				if after.TokensNotBefore == nil || !after.TokensNotBefore.Equal(now) {
					t.Errorf("TokensNotBefore = %v, want %v", after.TokensNotBefore, now)
				}
			default:
				if !sameTime(after.TokensNotBefore, before.TokensNotBefore) {
					t.Errorf("TokensNotBefore %v → %v; want unchanged", before.TokensNotBefore, after.TokensNotBefore)
				}
			}

			creds := f.credentials(t, before.ID)
			if tt.action == lifecycle.Decommission {
				if len(creds) != 0 || len(got.Credentials) != 0 {
					t.Errorf("decommissioned agent keeps %d credentials (returned %d); want none", len(creds), len(got.Credentials))
				}
			} else if len(creds) != len(credsBefore) {
				t.Errorf("credentials %d → %d; want unchanged", len(credsBefore), len(creds))
			}

			if len(events) != len(eventsBefore)+1 {
				t.Fatalf("audit events %d → %d; want one more", len(eventsBefore), len(events))
			}
			ev := events[len(events)-1]
			if ev.Type != tt.event || ev.Actor != actor || ev.Outcome != "success" || ev.Reason != "ticket 42" || ev.Namespace != before.Namespace {
				t.Errorf("audit event = %s by %q, outcome %q, reason %q, namespace %q; want %s by %q, success, the reason, %q",
					ev.Type, ev.Actor, ev.Outcome, ev.Reason, ev.Namespace, tt.event, actor, before.Namespace)
			}
			if d := eventData(t, ev); d["from"] != tt.from || d["to"] != tt.to {
				t.Errorf("audit data = %v, want from %s to %s", d, tt.from, tt.to)
			}

			if len(changes) != 1 || changes[0].ID != before.ID || changes[0].Status != tt.to {
				t.Errorf("OnChange saw %+v; want one call for %s in state %s", changes, before.ID, tt.to)
			}
		})
	}
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func TestTransitionTokensNotBeforeSurvivesResume(t *testing.T) {
	f := newFixture(t)
	a := f.agentIn(t, store.StatusActive)
	if a.TokensNotBefore != nil {
		t.Fatalf("new agent has TokensNotBefore %v", a.TokensNotBefore)
	}
	suspendedAt := f.clock.Now()
	if _, err := f.svc.Transition(t.Context(), actor, a.ID, lifecycle.Suspend, ""); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if _, err := f.svc.Transition(t.Context(), actor, a.ID, lifecycle.Resume, ""); err != nil {
		t.Fatal(err)
	}
	got := f.agent(t, a.ID)
	if got.Status != store.StatusActive || got.TokensNotBefore == nil || !got.TokensNotBefore.Equal(suspendedAt) {
		t.Errorf("after resume: status %s, TokensNotBefore %v; want active, %v", got.Status, got.TokensNotBefore, suspendedAt)
	}
}

func TestTransitionRefusesBadInput(t *testing.T) {
	f := newFixture(t)
	a := f.agentIn(t, store.StatusActive)
	tests := []struct {
		name   string
		id     string
		action lifecycle.Action
		reason string
		field  string // the ValidationError field; "" for not found
	}{
		{"unknown action", a.ID, "pause", "", "action"},
		{"control character in reason", a.ID, lifecycle.Suspend, "line\x1b[2J", "reason"},
		{"reason too long", a.ID, lifecycle.Suspend, strings.Repeat("x", 1025), "reason"},
		{"unknown agent", "agt_missing", lifecycle.Suspend, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			count := f.auditCount(t)
			_, err := f.svc.Transition(t.Context(), actor, tt.id, tt.action, tt.reason)
			if tt.field == "" {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Transition = %v, want ErrNotFound", err)
				}
			} else {
				wantFields(t, err, tt.field)
			}
			if got := f.agent(t, a.ID); got.Status != store.StatusActive || got.Generation != a.Generation {
				t.Errorf("agent changed: %s generation %d", got.Status, got.Generation)
			}
			if f.auditCount(t) != count {
				t.Error("a refused request wrote an audit event")
			}
		})
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range allActions {
		if got, ok := lifecycle.ParseAction(string(a)); !ok || got != a {
			t.Errorf("ParseAction(%q) = %q, %v", a, got, ok)
		}
	}
	for _, s := range []string{"", "Suspend", "delete", "resume "} {
		if _, ok := lifecycle.ParseAction(s); ok {
			t.Errorf("ParseAction(%q) ok, want refused", s)
		}
	}
}

// wantFields checks err is a *ValidationError naming each of fields.
func wantFields(t *testing.T, err error, fields ...string) {
	t.Helper()
	var ve *lifecycle.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v (%T), want *ValidationError naming %v", err, err, fields)
	}
	var got []string
	for _, fe := range ve.Fields {
		got = append(got, fe.Field)
		if fe.Detail == "" {
			t.Errorf("field %s has no detail", fe.Field)
		}
	}
	for _, want := range fields {
		if !slices.Contains(got, want) {
			t.Errorf("ValidationError names %q, want it to name %s (%v)", got, want, err)
		}
	}
}

func TestRegisterValidation(t *testing.T) {
	ec := &ecKey().PublicKey
	akPublic := base64.StdEncoding.EncodeToString(make([]byte, 32))
	sha256PCR := hex.EncodeToString(make([]byte, 32))
	tests := []struct {
		name   string
		modify func(r *lifecycle.RegisterRequest)
		field  string
	}{
		{"name missing", func(r *lifecycle.RegisterRequest) { r.Name = "" }, "name"},
		{"name upper case", func(r *lifecycle.RegisterRequest) { r.Name = "Summariser" }, "name"},
		{"name with slash", func(r *lifecycle.RegisterRequest) { r.Name = "a/b" }, "name"},
		{"name too long", func(r *lifecycle.RegisterRequest) { r.Name = strings.Repeat("a", 64) }, "name"},
		{"name ends with dash", func(r *lifecycle.RegisterRequest) { r.Name = "agent-" }, "name"},
		{"namespace missing", func(r *lifecycle.RegisterRequest) { r.Namespace = "" }, "namespace"},
		{"namespace with dot", func(r *lifecycle.RegisterRequest) { r.Namespace = "prod.eu" }, "namespace"},
		{"owner missing", func(r *lifecycle.RegisterRequest) { r.Owner = "" }, "owner"},
		{"owner too long", func(r *lifecycle.RegisterRequest) { r.Owner = strings.Repeat("o", 129) }, "owner"},
		{"owner control character", func(r *lifecycle.RegisterRequest) { r.Owner = "alice\r\nforged: yes" }, "owner"},
		{"purpose too long", func(r *lifecycle.RegisterRequest) { r.Purpose = strings.Repeat("p", 1025) }, "purpose"},
		{"risk level unknown", func(r *lifecycle.RegisterRequest) { r.RiskLevel = "extreme" }, "risk_level"},
		{"risk level upper case", func(r *lifecycle.RegisterRequest) { r.RiskLevel = "HIGH" }, "risk_level"},
		{"token alg HS256", func(r *lifecycle.RegisterRequest) { r.TokenAlg = "HS256" }, "token_alg"},
		{"credential missing", func(r *lifecycle.RegisterRequest) { r.Credential = nil }, "credential"},
		{"credential type unknown", func(r *lifecycle.RegisterRequest) { r.Credential.Type = "password" }, "credential.type"},
		{"jwks missing", func(r *lifecycle.RegisterRequest) { r.Credential.JWKS = nil }, "credential.jwks"},
		{"jwks null", func(r *lifecycle.RegisterRequest) { r.Credential.JWKS = []byte("null") }, "credential.jwks"},
		{"jwks for client_secret", func(r *lifecycle.RegisterRequest) { r.Credential.Type = store.CredentialClientSecret }, "credential.jwks"},
		{"jwks with private key d", func(r *lifecycle.RegisterRequest) {
			r.Credential.JWKS = jwksOf(t, publicJWK(ecKey(), "k1", ""))
		}, "credential.jwks"},
		{"jwks with duplicate kid", func(r *lifecycle.RegisterRequest) {
			r.Credential.JWKS = jwksOf(t, publicJWK(ec, "k1", ""), publicJWK(&ecKey2().PublicKey, "k1", ""))
		}, "credential.jwks"},
		{"jwks RSA 1024", func(r *lifecycle.RegisterRequest) {
			r.Credential.JWKS = jwksOf(t, publicJWK(&rsa1024().PublicKey, "k1", "RS256"))
		}, "credential.jwks"},
		{"jwks EC P-384", func(r *lifecycle.RegisterRequest) {
			r.Credential.JWKS = jwksOf(t, publicJWK(&p384Key().PublicKey, "k1", ""))
		}, "credential.jwks"},
		{"jwks alg mismatch", func(r *lifecycle.RegisterRequest) {
			r.Credential.JWKS = jwksOf(t, publicJWK(ec, "k1", "RS256"))
		}, "credential.jwks"},
		{"scope with space", func(r *lifecycle.RegisterRequest) { r.AllowedScopes = []string{"tickets read"} }, "allowed_scopes[0]"},
		{"scope with quote", func(r *lifecycle.RegisterRequest) { r.AllowedScopes = []string{"ok", `say"hi"`} }, "allowed_scopes[1]"},
		{"scope with backslash", func(r *lifecycle.RegisterRequest) { r.AllowedScopes = []string{`a\b`} }, "allowed_scopes[0]"},
		{"scope empty", func(r *lifecycle.RegisterRequest) { r.AllowedScopes = []string{""} }, "allowed_scopes[0]"},
		{"scope twice", func(r *lifecycle.RegisterRequest) { r.AllowedScopes = []string{"a", "a"} }, "allowed_scopes[1]"},
		{"resource with fragment", func(r *lifecycle.RegisterRequest) {
			r.AllowedResources = []string{"https://api.example.com/#frag"}
		}, "allowed_resources[0]"},
		{"resource relative", func(r *lifecycle.RegisterRequest) { r.AllowedResources = []string{"/api"} }, "allowed_resources[0]"},
		{"resource twice", func(r *lifecycle.RegisterRequest) {
			r.AllowedResources = []string{"https://a.example/", "https://a.example/"}
		}, "allowed_resources[1]"},
		{"max_token_ttl too long", func(r *lifecycle.RegisterRequest) { r.MaxTokenTTL = "2h" }, "max_token_ttl"},
		{"max_token_ttl too short", func(r *lifecycle.RegisterRequest) { r.MaxTokenTTL = "30s" }, "max_token_ttl"},
		{"max_token_ttl not a duration", func(r *lifecycle.RegisterRequest) { r.MaxTokenTTL = "ten minutes" }, "max_token_ttl"},
		{"attestation_ttl too long", func(r *lifecycle.RegisterRequest) { r.AttestationTTL = "25h" }, "attestation_ttl"},
		{"reference digest malformed", func(r *lifecycle.RegisterRequest) {
			r.Reference = &lifecycle.Reference{ModelDigest: "sha256:ABCDEF"}
		}, "reference.model_digest"},
		{"reference digest wrong algorithm", func(r *lifecycle.RegisterRequest) {
			r.Reference = &lifecycle.Reference{PromptDigest: "md5:" + strings.Repeat("0", 32)}
		}, "reference.prompt_digest"},
		{"tpm pcr index 24", func(r *lifecycle.RegisterRequest) {
			r.Reference = &lifecycle.Reference{TPM: &lifecycle.TPMReference{AKPublic: akPublic,
				PCRs: map[string]map[string]string{"sha256": {"24": sha256PCR}}}}
		}, "reference.tpm.pcrs.sha256.24"},
		{"tpm pcr index with leading zero", func(r *lifecycle.RegisterRequest) {
			r.Reference = &lifecycle.Reference{TPM: &lifecycle.TPMReference{AKPublic: akPublic,
				PCRs: map[string]map[string]string{"sha256": {"07": sha256PCR}}}}
		}, "reference.tpm.pcrs.sha256.07"},
		{"tpm pcr value wrong size", func(r *lifecycle.RegisterRequest) {
			r.Reference = &lifecycle.Reference{TPM: &lifecycle.TPMReference{AKPublic: akPublic,
				PCRs: map[string]map[string]string{"sha1": {"0": sha256PCR}}}}
		}, "reference.tpm.pcrs.sha1.0"},
		{"tpm bank unknown", func(r *lifecycle.RegisterRequest) {
			r.Reference = &lifecycle.Reference{TPM: &lifecycle.TPMReference{AKPublic: akPublic,
				PCRs: map[string]map[string]string{"sm3": {"0": sha256PCR}}}}
		}, "reference.tpm.pcrs.sm3"},
		{"tpm ak not base64", func(r *lifecycle.RegisterRequest) {
			r.Reference = &lifecycle.Reference{TPM: &lifecycle.TPMReference{AKPublic: "not base64!"}}
		}, "reference.tpm.ak_public"},
		{"sigstore issuer http", func(r *lifecycle.RegisterRequest) {
			r.Reference = &lifecycle.Reference{Sigstore: []lifecycle.SigstoreReference{{Issuer: "http://issuer.example", Subject: "ci"}}}
		}, "reference.sigstore[0].issuer"},
		{"on_mismatch unknown", func(r *lifecycle.RegisterRequest) {
			r.Reference = &lifecycle.Reference{ModelDigest: "sha256:" + strings.Repeat("a", 64), OnMismatch: "delete"}
		}, "reference.on_mismatch"},
	}
	f := newFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := validRequest(t)
			tt.modify(&req)
			count := f.auditCount(t)
			reg, err := f.svc.Register(t.Context(), actor, req)
			if reg != nil {
				t.Errorf("Register returned %+v with an error", reg)
			}
			wantFields(t, err, tt.field)
			agents, lerr := f.st.ListAgents(t.Context(), store.AgentFilter{})
			if lerr != nil {
				t.Fatal(lerr)
			}
			if len(agents) != 0 {
				t.Errorf("an invalid registration stored %d agents", len(agents))
			}
			if f.auditCount(t) != count {
				t.Error("an invalid registration wrote an audit event")
			}
			if c := f.takeChanges(); len(c) != 0 {
				t.Errorf("OnChange called for an invalid registration: %v", c)
			}
		})
	}

	// The valid base request really is valid: otherwise every case above proves nothing.
	if _, err := f.svc.Register(t.Context(), actor, validRequest(t)); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
}

func TestRegisterReportsEveryField(t *testing.T) {
	f := newFixture(t)
	req := validRequest(t)
	req.Name, req.Namespace, req.Owner, req.RiskLevel = "Bad Name", "", "", "none"
	req.AllowedScopes = []string{"a b"}
	req.MaxTokenTTL = "1s"
	req.Credential.Type = "password"
	_, err := f.svc.Register(t.Context(), actor, req)
	wantFields(t, err, "name", "namespace", "owner", "risk_level", "allowed_scopes[0]", "max_token_ttl", "credential.type")
}

func TestRegister(t *testing.T) {
	f := newFixture(t)
	req := validRequest(t)
	req.RiskLevel = "" // defaults to medium
	req.MaxTokenTTL = ""
	reg := f.register(t, req)
	a := reg.Agent

	if !strings.HasPrefix(a.ID, "agt_") || a.ClientID != a.ID {
		t.Errorf("ID %q, ClientID %q; want agt_… and equal", a.ID, a.ClientID)
	}
	stored := f.agent(t, a.ID)
	if stored.Status != store.StatusActive || stored.RiskLevel != "medium" || stored.TokenAlg != "ES256" ||
		stored.MaxTokenTTLSeconds != 300 || stored.AttestationTTLSeconds != 600 || stored.Generation != 1 ||
		!stored.CreatedAt.Equal(f.clock.Now()) {
		t.Errorf("stored agent %+v; want active, medium, ES256, 300s, 600s, generation 1, created now", stored)
	}
	if !slices.Equal(stored.AllowedScopes, req.AllowedScopes) || !slices.Equal(stored.AllowedResources, req.AllowedResources) {
		t.Errorf("scopes %v resources %v; want %v %v", stored.AllowedScopes, stored.AllowedResources, req.AllowedScopes, req.AllowedResources)
	}
	if reg.ClientSecret != "" {
		t.Error("private_key_jwt registration returned a client secret")
	}
	creds := f.credentials(t, a.ID)
	if len(creds) != 1 || creds[0].Type != store.CredentialPrivateKeyJWT || creds[0].State != store.CredentialActive || creds[0].SecretHash != nil {
		t.Fatalf("credentials = %+v; want one active private_key_jwt", creds)
	}
	if _, err := lifecycle.ParseJWKS(creds[0].JWKS); err != nil {
		t.Errorf("stored JWKS does not parse: %v", err)
	}

	evs := f.auditOf(t, a.ID)
	if len(evs) != 1 || evs[0].Type != "agent.registered" || evs[0].Actor != actor {
		t.Fatalf("audit = %+v; want one agent.registered by %s", evs, actor)
	}
	if d := eventData(t, evs[0]); d["name"] != req.Name || d["credential_type"] != store.CredentialPrivateKeyJWT {
		t.Errorf("audit data = %v", d)
	}
	if c := f.takeChanges(); len(c) != 1 || c[0].ID != a.ID {
		t.Errorf("OnChange saw %v; want one call for %s", c, a.ID)
	}

	pending := validRequest(t)
	pending.Pending = true
	if got := f.register(t, pending).Agent.Status; got != store.StatusPending {
		t.Errorf("Pending registration has status %s", got)
	}
}

func TestRegisterDuplicateName(t *testing.T) {
	f := newFixture(t)
	req := validRequest(t)
	first := f.register(t, req)
	count := f.auditCount(t)
	f.takeChanges()

	_, err := f.svc.Register(t.Context(), actor, req)
	var ce *lifecycle.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("second Register = %v (%T), want *ConflictError", err, err)
	}
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("ConflictError does not wrap store.ErrConflict: %v", err)
	}
	if !strings.Contains(ce.Detail, req.Name) || !strings.Contains(ce.Detail, req.Namespace) {
		t.Errorf("Detail %q does not name the agent and namespace", ce.Detail)
	}
	if f.auditCount(t) != count || len(f.takeChanges()) != 0 {
		t.Error("a conflicting registration was audited or announced")
	}
	if got := f.agent(t, first.Agent.ID); got.Generation != 1 {
		t.Errorf("the first agent changed: generation %d", got.Generation)
	}

	// The same name in another namespace is another agent.
	req.Namespace = "staging"
	if _, err := f.svc.Register(t.Context(), actor, req); err != nil {
		t.Errorf("same name in another namespace: %v", err)
	}
}

func TestRegisterClientSecret(t *testing.T) {
	f := newFixture(t)
	req := validRequest(t)
	req.Credential = &lifecycle.CredentialRequest{Type: store.CredentialClientSecret}
	reg := f.register(t, req)

	secret := reg.ClientSecret
	if !strings.HasPrefix(secret, lifecycle.ClientSecretPrefix) || len(secret) != len(lifecycle.ClientSecretPrefix)+43 {
		t.Fatalf("ClientSecret %q; want %s + 43 base64url characters", secret, lifecycle.ClientSecretPrefix)
	}
	creds := f.credentials(t, reg.Agent.ID)
	if len(creds) != 1 {
		t.Fatalf("%d credentials, want 1", len(creds))
	}
	hash := creds[0].SecretHash
	if !f.hasher.Equal(secret, hash) {
		t.Error("stored hash does not match the returned secret")
	}
	if string(hash) == secret || strings.Contains(string(hash), secret) || len(hash) != 32 {
		t.Errorf("stored SecretHash %x is not an HMAC-SHA-256 of the secret", hash)
	}
	if creds[0].JWKS != nil {
		t.Errorf("client_secret credential has JWKS %s", creds[0].JWKS)
	}

	// The secret is shown once: reading the agent back, or its audit trail, does not
	// reveal it.
	got, err := f.svc.Get(t.Context(), reg.Agent.ID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dump(got), secret) {
		t.Error("Get reveals the client secret")
	}
	for _, ev := range f.auditOf(t, reg.Agent.ID) {
		if strings.Contains(string(ev.Data), secret) {
			t.Errorf("audit event %s contains the client secret", ev.Type)
		}
	}

	// Two registrations never share a secret.
	req2 := validRequest(t)
	req2.Credential = &lifecycle.CredentialRequest{Type: store.CredentialClientSecret}
	if other := f.register(t, req2).ClientSecret; other == secret {
		t.Error("two agents got the same client secret")
	}
}

// dump renders v every way it might leave the process: %+v and JSON.
func dump(v any) string {
	b, _ := json.Marshal(v)
	return fmt.Sprintf("%+v", v) + string(b)
}

func TestRotateCredentialClientSecret(t *testing.T) {
	f := newFixture(t)
	req := validRequest(t)
	req.Credential = &lifecycle.CredentialRequest{Type: store.CredentialClientSecret}
	reg := f.register(t, req)
	id := reg.Agent.ID
	f.takeChanges()
	gen := f.agent(t, id).Generation

	f.clock.Advance(time.Minute)
	now := f.clock.Now()
	rot, err := f.svc.RotateCredential(t.Context(), actor, id, lifecycle.RotateRequest{Grace: "2h"})
	if err != nil {
		t.Fatalf("RotateCredential: %v", err)
	}
	if want := now.Add(2 * time.Hour); !rot.GraceUntil.Equal(want) {
		t.Errorf("GraceUntil = %v, want %v", rot.GraceUntil, want)
	}
	if rot.ClientSecret == "" || rot.ClientSecret == reg.ClientSecret {
		t.Fatalf("rotation returned secret %q; want a new one", rot.ClientSecret)
	}

	creds := f.credentials(t, id)
	if len(creds) != 2 {
		t.Fatalf("%d credentials after rotation, want 2", len(creds))
	}
	var old, cur *store.Credential
	for i := range creds {
		switch creds[i].State {
		case store.CredentialRetiring:
			old = &creds[i]
		case store.CredentialActive:
			cur = &creds[i]
		}
	}
	if old == nil || cur == nil {
		t.Fatalf("credentials %+v; want one retiring and one active", creds)
	}
	if old.ExpiresAt == nil || !old.ExpiresAt.Equal(now.Add(2*time.Hour)) {
		t.Errorf("retiring ExpiresAt = %v, want now+2h = %v", old.ExpiresAt, now.Add(2*time.Hour))
	}
	if cur.ExpiresAt != nil {
		t.Errorf("active credential has ExpiresAt %v", cur.ExpiresAt)
	}
	if !f.hasher.Equal(reg.ClientSecret, old.SecretHash) || !f.hasher.Equal(rot.ClientSecret, cur.SecretHash) {
		t.Error("the retiring credential must hold the old secret's hash and the active one the new")
	}
	if f.hasher.Equal(reg.ClientSecret, cur.SecretHash) {
		t.Error("the old secret matches the new credential")
	}
	if g := f.agent(t, id).Generation; g <= gen {
		t.Errorf("Generation %d → %d; rotation must bump it so caches reload", gen, g)
	}

	evs := f.auditOf(t, id)
	ev := evs[len(evs)-1]
	if ev.Type != "credential.rotated" {
		t.Fatalf("last audit event %s, want credential.rotated", ev.Type)
	}
	d := eventData(t, ev)
	if d["credential_id"] != cur.ID || d["grace_until"] != now.Add(2*time.Hour).Format(time.RFC3339) {
		t.Errorf("audit data %v; want credential_id %s and grace_until", d, cur.ID)
	}
	if strings.Contains(string(ev.Data), rot.ClientSecret) {
		t.Error("audit event contains the new secret")
	}
	if c := f.takeChanges(); len(c) != 1 || c[0].ID != id {
		t.Errorf("OnChange saw %v; want one call", c)
	}
}

func TestRotateCredentialDefaultGrace(t *testing.T) {
	f := newFixture(t)
	id := f.register(t, validRequest(t)).Agent.ID
	rot, err := f.svc.RotateCredential(t.Context(), actor, id, lifecycle.RotateRequest{
		JWKS: jwksOf(t, publicJWK(&ecKey2().PublicKey, "k2", "ES256")),
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := f.clock.Now().Add(24 * time.Hour); !rot.GraceUntil.Equal(want) {
		t.Errorf("GraceUntil = %v, want the default grace of 24h: %v", rot.GraceUntil, want)
	}
	if rot.ClientSecret != "" {
		t.Error("private_key_jwt rotation returned a client secret")
	}
	if len(rot.Agent.Credentials) != 2 || rot.Agent.Credentials[0].State != store.CredentialActive {
		t.Fatalf("returned credentials %+v; want the new active one first, then the retiring", rot.Agent.Credentials)
	}
	set, err := lifecycle.ParseJWKS(rot.Agent.Credentials[0].JWKS)
	if err != nil || set.Keys[0].KeyID != "k2" {
		t.Errorf("active credential JWKS = %v, %v; want k2", set, err)
	}
}

func TestRotateCredentialRefused(t *testing.T) {
	f := newFixture(t)
	newJWKS := jwksOf(t, publicJWK(&ecKey2().PublicKey, "k2", ""))
	tests := []struct {
		name  string
		state string
		req   lifecycle.RotateRequest
		field string // ValidationError field; "" for a TransitionError
	}{
		{"revoked", store.StatusRevoked, lifecycle.RotateRequest{JWKS: newJWKS}, ""},
		{"decommissioned", store.StatusDecommissioned, lifecycle.RotateRequest{JWKS: newJWKS}, ""},
		{"no jwks", store.StatusActive, lifecycle.RotateRequest{}, "jwks"},
		{"private jwks", store.StatusActive, lifecycle.RotateRequest{JWKS: jwksOf(t, publicJWK(ecKey2(), "k2", ""))}, "jwks"},
		{"grace negative", store.StatusActive, lifecycle.RotateRequest{JWKS: newJWKS, Grace: "-1h"}, "grace"},
		{"grace too long", store.StatusActive, lifecycle.RotateRequest{JWKS: newJWKS, Grace: "721h"}, "grace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.agentIn(t, tt.state)
			creds := f.credentials(t, a.ID)
			count := f.auditCount(t)
			_, err := f.svc.RotateCredential(t.Context(), actor, a.ID, tt.req)
			if tt.field == "" {
				var te *lifecycle.TransitionError
				if !errors.As(err, &te) || te.From != tt.state {
					t.Fatalf("RotateCredential = %v, want *TransitionError from %s", err, tt.state)
				}
			} else {
				wantFields(t, err, tt.field)
			}
			if got := f.credentials(t, a.ID); len(got) != len(creds) {
				t.Errorf("credentials %d → %d", len(creds), len(got))
			}
			if g := f.agent(t, a.ID).Generation; g != a.Generation {
				t.Errorf("Generation %d → %d", a.Generation, g)
			}
			if f.auditCount(t) != count || len(f.takeChanges()) != 0 {
				t.Error("a refused rotation was audited or announced")
			}
		})
	}
}

func TestRotateCredentialSuspendedAllowed(t *testing.T) {
	// Rotating the credentials of a suspended agent (after a leak, typically) must work.
	f := newFixture(t)
	a := f.agentIn(t, store.StatusSuspended)
	if _, err := f.svc.RotateCredential(t.Context(), actor, a.ID, lifecycle.RotateRequest{
		JWKS: jwksOf(t, publicJWK(&ecKey2().PublicKey, "k2", "")), Grace: "0s",
	}); err != nil {
		t.Fatalf("RotateCredential on a suspended agent: %v", err)
	}
	for _, c := range f.credentials(t, a.ID) {
		if c.State == store.CredentialRetiring && (c.ExpiresAt == nil || !c.ExpiresAt.Equal(f.clock.Now())) {
			t.Errorf("grace 0s: retiring ExpiresAt = %v, want now", c.ExpiresAt)
		}
	}
}

func TestOnChangeListeners(t *testing.T) {
	f := newFixture(t)
	var second []string
	f.svc.OnChange(func(a *store.Agent) { second = append(second, a.ID+":"+a.Status) })

	id := f.register(t, validRequest(t)).Agent.ID
	owner := "bob@example.com"
	steps := []struct {
		name string
		do   func() error
	}{
		{"patch", func() error {
			_, err := f.svc.Patch(t.Context(), actor, id, lifecycle.PatchRequest{Owner: &owner})
			return err
		}},
		{"rotate", func() error {
			_, err := f.svc.RotateCredential(t.Context(), actor, id, lifecycle.RotateRequest{JWKS: jwksOf(t, publicJWK(&ecKey2().PublicKey, "k2", ""))})
			return err
		}},
		{"suspend", func() error {
			_, err := f.svc.Transition(t.Context(), actor, id, lifecycle.Suspend, "")
			return err
		}},
	}
	want := []string{id + ":active"}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		want = append(want, id+":"+f.agent(t, id).Status)
	}
	if !slices.Equal(second, want) {
		t.Errorf("second listener saw %v, want %v", second, want)
	}
	if got := f.takeChanges(); len(got) != len(want) {
		t.Errorf("first listener called %d times, want %d", len(got), len(want))
	}

	// A listener runs after the change committed: reading the store from it sees the
	// new state.
	var seen string
	f.svc.OnChange(func(a *store.Agent) {
		if got, err := f.st.GetAgent(t.Context(), a.ID); err == nil {
			seen = got.Status
		}
	})
	if _, err := f.svc.Transition(t.Context(), actor, id, lifecycle.Resume, ""); err != nil {
		t.Fatal(err)
	}
	if seen != store.StatusActive {
		t.Errorf("listener read status %q from the store, want active (the committed state)", seen)
	}
}

func TestPatch(t *testing.T) {
	f := newFixture(t)
	id := f.register(t, validRequest(t)).Agent.ID
	scopes := []string{"tickets:read"}
	ttl := "20m"
	got, err := f.svc.Patch(t.Context(), actor, id, lifecycle.PatchRequest{AllowedScopes: &scopes, MaxTokenTTL: &ttl})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.AllowedScopes, scopes) || got.MaxTokenTTLSeconds != 1200 {
		t.Errorf("after patch: scopes %v ttl %d", got.AllowedScopes, got.MaxTokenTTLSeconds)
	}
	evs := f.auditOf(t, id)
	if ev := evs[len(evs)-1]; ev.Type != "agent.updated" {
		t.Errorf("audit event %s, want agent.updated", ev.Type)
	}

	bad := "bad scope"
	badScopes := []string{bad}
	_, err = f.svc.Patch(t.Context(), actor, id, lifecycle.PatchRequest{AllowedScopes: &badScopes})
	wantFields(t, err, "allowed_scopes[0]")

	_, err = f.svc.Patch(t.Context(), actor, id, lifecycle.PatchRequest{})
	wantFields(t, err, "")

	if _, err := f.svc.Transition(t.Context(), actor, id, lifecycle.Decommission, ""); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Patch(t.Context(), actor, id, lifecycle.PatchRequest{AllowedScopes: &scopes})
	var te *lifecycle.TransitionError
	if !errors.As(err, &te) {
		t.Errorf("Patch of a decommissioned agent = %v, want *TransitionError", err)
	}
}

func TestPatchEmptyTokenAlg(t *testing.T) {
	// Register treats an empty token_alg as ES256; Patch must not store "" instead.
	f := newFixture(t)
	id := f.register(t, validRequest(t)).Agent.ID
	empty := ""
	if _, err := f.svc.Patch(t.Context(), actor, id, lifecycle.PatchRequest{TokenAlg: &empty}); err != nil {
		var ve *lifecycle.ValidationError
		if errors.As(err, &ve) {
			return // refusing "" is as good as normalising it
		}
		t.Fatal(err)
	}
	if got := f.agent(t, id).TokenAlg; got != "ES256" {
		t.Fatalf("regression of a fixed bug: service.go Patch stores token_alg %q verbatim instead of the value tokenAlg normalised it to (ES256)", got)
	}
}

func TestGetUnknown(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.Get(t.Context(), "agt_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
	if _, err := f.svc.RotateCredential(t.Context(), actor, "agt_missing", lifecycle.RotateRequest{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateCredential = %v, want ErrNotFound", err)
	}
}

func TestList(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for range 5 {
		ids = append(ids, f.register(t, validRequest(t)).Agent.ID)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		page, next, err := f.svc.List(t.Context(), store.AgentFilter{Limit: 2, After: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page {
			got = append(got, a.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(got, ids) {
		t.Errorf("pages visited %v, want %v (creation order)", got, ids)
	}
}
