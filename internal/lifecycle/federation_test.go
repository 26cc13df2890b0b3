package lifecycle_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

const (
	entraV2 = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
	github  = "https://token.actions.githubusercontent.com"
	miOID   = "6f1a6a0e-1111-4c7e-9a52-000000000001"
)

type trustList []string

func (l trustList) Trusted(iss string) bool {
	for _, s := range l {
		if s == iss {
			return true
		}
	}
	return false
}

func federatedRequest(t *testing.T) lifecycle.RegisterRequest {
	req := validRequest(t)
	req.Credential = &lifecycle.CredentialRequest{Type: store.CredentialFederated, FederatedCredentialRequest: lifecycle.FederatedCredentialRequest{
		Issuer: entraV2, Subject: miOID, Audience: "api://lanyard", RequireAppToken: true, AllowedClientIDs: []string{"app-1"},
	}}
	return req
}

func fieldErrors(err error) string {
	var ve *lifecycle.ValidationError
	if !errors.As(err, &ve) {
		return "not a ValidationError: " + err.Error()
	}
	var parts []string
	for _, f := range ve.Fields {
		parts = append(parts, f.Field+": "+f.Detail)
	}
	return strings.Join(parts, "; ")
}

func TestRegisterFederated(t *testing.T) {
	f := newFixture(t)
	// Without any trusted issuer, a federated credential is refused.
	_, err := f.svc.Register(t.Context(), actor, federatedRequest(t))
	if got := fieldErrors(err); !strings.Contains(got, "credential.issuer: \""+entraV2+"\" is not a trusted federation issuer") {
		t.Fatalf("untrusted issuer: %s", got)
	}
	f.svc.SetIssuerTrust(trustList{entraV2, github})
	reg := f.register(t, federatedRequest(t))
	a := f.agent(t, reg.Agent.ID)
	if a.CredentialType != store.CredentialFederated || reg.ClientSecret != "" {
		t.Fatalf("agent: %+v", a)
	}
	creds := f.credentials(t, a.ID)
	if len(creds) != 1 || creds[0].Issuer != entraV2 || creds[0].Subject != miOID || creds[0].Audience != "api://lanyard" ||
		!creds[0].RequireAppToken || len(creds[0].AllowedClientIDs) != 1 {
		t.Fatalf("credential: %+v", creds)
	}

	tests := []struct {
		name string
		mod  func(r *lifecycle.RegisterRequest)
		want string
	}{
		{"no subject", func(r *lifecycle.RegisterRequest) { r.Credential.Subject = "" }, "credential.subject: is required"},
		{"no audience", func(r *lifecycle.RegisterRequest) { r.Credential.Audience = "" }, "credential.audience: is required"},
		{"no issuer", func(r *lifecycle.RegisterRequest) { r.Credential.Issuer = "" }, "credential.issuer: is required for federated"},
		{"subject too long", func(r *lifecycle.RegisterRequest) { r.Credential.Subject = strings.Repeat("s", 601) }, "credential.subject: must be at most 600 bytes"},
		{"duplicate client id", func(r *lifecycle.RegisterRequest) { r.Credential.AllowedClientIDs = []string{"a", "a"} }, `credential.allowed_client_ids[1]: "a" is listed twice`},
		{"jwks on federated", func(r *lifecycle.RegisterRequest) { r.Credential.JWKS = []byte(`{"keys":[]}`) }, "credential.jwks: must not be set for federated"},
		{"federated fields on private_key_jwt", func(r *lifecycle.RegisterRequest) {
			r.Credential.Type = store.CredentialPrivateKeyJWT
			r.Credential.JWKS = validRequest(t).Credential.JWKS
		}, "credential: issuer, subject, audience, allowed_client_ids and require_app_token are for federated credentials only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := federatedRequest(t)
			tt.mod(&req)
			before := f.auditCount(t)
			_, err := f.svc.Register(t.Context(), actor, req)
			if got := fieldErrors(err); !strings.Contains(got, tt.want) {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			if f.auditCount(t) != before {
				t.Fatal("a refused registration was audited as a change")
			}
		})
	}
}

func TestFederatedCredentialsAddRemove(t *testing.T) {
	f := newFixture(t)
	f.svc.SetIssuerTrust(trustList{entraV2, github})
	id := f.register(t, federatedRequest(t)).Agent.ID
	f.takeChanges()

	gh := lifecycle.FederatedCredentialRequest{Issuer: github, Subject: "repo:acme/agents:environment:prod", Audience: "api://lanyard"}
	a, err := f.svc.AddFederatedCredential(t.Context(), actor, id, gh)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Credentials) != 2 || len(f.takeChanges()) != 1 {
		t.Fatalf("after add: %+v", a.Credentials)
	}
	if _, err := f.svc.AddFederatedCredential(t.Context(), actor, id, gh); !strings.Contains(errString(err), "already has a federated credential") {
		t.Fatalf("duplicate add: %v", err)
	}
	if _, err := f.svc.AddFederatedCredential(t.Context(), actor, id, lifecycle.FederatedCredentialRequest{Issuer: "https://evil.example.com", Subject: "x", Audience: "y"}); !strings.Contains(fieldErrors(err), "issuer: \"https://evil.example.com\" is not a trusted") {
		t.Fatalf("untrusted add: %v", err)
	}
	// Rotation does not apply to federated agents.
	var ce *lifecycle.ConflictError
	if _, err := f.svc.RotateCredential(t.Context(), actor, id, lifecycle.RotateRequest{}); !errors.As(err, &ce) {
		t.Fatalf("rotate a federated agent: %v", err)
	}
	var ghID string
	for _, c := range a.Credentials {
		if c.Issuer == github {
			ghID = c.ID
		}
	}
	a, err = f.svc.RemoveFederatedCredential(t.Context(), actor, id, ghID)
	if err != nil || len(a.Credentials) != 1 {
		t.Fatalf("remove: %v %+v", err, a)
	}
	if _, err := f.svc.RemoveFederatedCredential(t.Context(), actor, id, ghID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remove twice: %v", err)
	}
	if _, err := f.svc.RemoveFederatedCredential(t.Context(), actor, id, a.Credentials[0].ID); !errors.As(err, &ce) {
		t.Fatalf("removing the last credential of a federated agent: %v", err)
	}
	var types []string
	for _, e := range f.auditOf(t, id) {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, ","); got != "agent.registered,credential.federated_added,credential.federated_removed" {
		t.Fatalf("audit: %s", got)
	}

	// A private_key_jwt agent may hold federated credentials too, and removing them all
	// is fine: its keys remain.
	other := f.register(t, validRequest(t)).Agent.ID
	a, err = f.svc.AddFederatedCredential(t.Context(), actor, other, gh)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RemoveFederatedCredential(t.Context(), actor, other, a.Credentials[0].ID); err != nil {
		t.Fatalf("remove from a key agent: %v", err)
	}
	// Decommissioned agents take no new credential.
	dead := f.agentIn(t, store.StatusDecommissioned)
	var te *lifecycle.TransitionError
	if _, err := f.svc.AddFederatedCredential(t.Context(), actor, dead.ID, gh); !errors.As(err, &te) {
		t.Fatalf("add to a decommissioned agent: %v", err)
	}
}

func TestPatchEntraFederation(t *testing.T) {
	f := newFixture(t)
	id := f.register(t, validRequest(t)).Agent.ID
	on := true
	a, err := f.svc.Patch(t.Context(), actor, id, lifecycle.PatchRequest{EntraFederation: &on})
	if err != nil || !a.EntraFederation {
		t.Fatalf("patch: %v %+v", err, a)
	}
	evs := f.auditOf(t, id)
	if last := evs[len(evs)-1]; last.Type != "agent.updated" || !strings.Contains(string(last.Data), "entra_federation") {
		t.Fatalf("audit: %+v", last)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
