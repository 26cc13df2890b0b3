package web

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

type trustOne string

func (t trustOne) Trusted(iss string) bool { return iss == string(t) }

// The Federation panel edits both directions through the lifecycle service: add and
// remove a federated credential, switch the Entra flag; refusals are shown, a viewer
// sees no form and cannot post one, and every change is audited.
func TestFederationPanel(t *testing.T) {
	const issuer = "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0"
	f := newFixture(t, "http://localhost:8080")
	f.h.d.Lifecycle.SetIssuerTrust(trustOne(issuer))
	r, err := f.h.d.Lifecycle.Register(t.Context(), "admin", lifecycle.RegisterRequest{Name: "fed", Namespace: "finance", Owner: "o",
		Credential: &lifecycle.CredentialRequest{Type: "client_secret"}})
	if err != nil {
		t.Fatal(err)
	}
	id := r.Agent.ID
	sc, csrf := f.signIn(t)
	post := func(path string, form url.Values, sc *http.Cookie) (int, string) {
		t.Helper()
		resp := f.do(t, "POST", path, form, []*http.Cookie{sc}, nil)
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	page := func(sc *http.Cookie) string {
		resp := f.do(t, "GET", "/ui/agents/"+id, nil, []*http.Cookie{sc}, nil)
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if !strings.Contains(page(sc), `action="/ui/agents/`+id+`/federation/credentials"`) {
		t.Fatal("an admin's agent page has no form to add a federated credential")
	}

	code, body := post("/ui/agents/"+id+"/federation/credentials", url.Values{"csrf_token": {csrf},
		"issuer": {"https://evil.example/v2.0"}, "subject": {"s"}, "audience": {"api://lanyard"}}, sc)
	if code != 400 || !strings.Contains(body, "not a trusted federation issuer") {
		t.Fatalf("untrusted issuer: %d %s", code, body)
	}
	code, _ = post("/ui/agents/"+id+"/federation/credentials", url.Values{"csrf_token": {csrf},
		"issuer": {issuer}, "subject": {"mi-object-id"}, "audience": {"api://lanyard"}, "client_ids": {"app-1, app-2"}, "app_only": {"on"}}, sc)
	if code != http.StatusSeeOther {
		t.Fatalf("add: %d", code)
	}
	a, err := f.h.d.Lifecycle.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var fed *store.Credential
	for i := range a.Credentials {
		if a.Credentials[i].Type == store.CredentialFederated {
			fed = &a.Credentials[i]
		}
	}
	if fed == nil || fed.Subject != "mi-object-id" || !fed.RequireAppToken || !slices.Equal([]string(fed.AllowedClientIDs), []string{"app-1", "app-2"}) {
		t.Fatalf("federated credential %+v", fed)
	}
	if !strings.Contains(page(sc), "mi-object-id") {
		t.Error("the added credential is not shown")
	}

	if code, _ := post("/ui/agents/"+id+"/federation/entra", url.Values{"csrf_token": {csrf}, "enable": {"true"}}, sc); code != http.StatusSeeOther {
		t.Fatalf("entra on: %d", code)
	}
	if a, _ := f.h.d.Lifecycle.Get(t.Context(), id); !a.EntraFederation {
		t.Fatal("entra_federation not set")
	}

	// A viewer sees the panel without its forms and cannot post them, CSRF token or not.
	vc := f.signInAs(t, &authz.Principal{Subject: "oidc:v#1", Name: "vic", Method: "oidc", Grants: []authz.Grant{{Role: authz.Viewer}}})
	if strings.Contains(page(vc), "/federation/credentials") {
		t.Error("a viewer is offered the federation forms")
	}
	vs, err := f.h.sess.load(t.Context(), &http.Request{Header: http.Header{"Cookie": {vc.String()}}}, store.UISessionUser)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := post("/ui/agents/"+id+"/federation/credentials/"+fed.ID+"/remove", url.Values{"csrf_token": {vs.CSRF}}, vc); code != 403 {
		t.Errorf("a viewer removing a federated credential: %d, want 403", code)
	}
	// Without the CSRF token nothing changes.
	if code, _ := post("/ui/agents/"+id+"/federation/credentials/"+fed.ID+"/remove", url.Values{}, sc); code != 403 {
		t.Errorf("remove without the CSRF token: %d, want 403", code)
	}

	if code, _ := post("/ui/agents/"+id+"/federation/credentials/"+fed.ID+"/remove", url.Values{"csrf_token": {csrf}}, sc); code != http.StatusSeeOther {
		t.Fatalf("remove: %d", code)
	}
	if a, _ := f.h.d.Lifecycle.Get(t.Context(), id); slices.ContainsFunc(a.Credentials, func(c store.Credential) bool { return c.Type == store.CredentialFederated }) {
		t.Fatal("the federated credential is still there")
	}
	for _, want := range []string{"credential.federated_added", "agent.updated", "credential.federated_removed"} {
		if !slices.Contains(f.aud.types(), want) {
			t.Errorf("no %s audit event in %v", want, f.aud.types())
		}
	}
}
