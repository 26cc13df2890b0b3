package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/lanyardhq/lanyard/internal/client"
	"github.com/lanyardhq/lanyard/internal/federation/entratest"
)

// TestFederationAdminAPI drives the federation admin API through the Go client the CLI
// uses: trusted issuers, an agent's federated credentials and its Entra flag.
func TestFederationAdminAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		c := client.New(e.base, e.admin, nil)
		entra := entratest.New(t)

		is, err := c.AddFederationIssuer(ctx, client.FederationIssuerRequest{Issuer: entra.IssuerV2(), Kind: "entra"})
		if err != nil || is.Keys != 1 || is.LastError != "" || is.Source != "api" {
			t.Fatalf("trust: %+v %v", is, err)
		}
		_, err = c.AddFederationIssuer(ctx, client.FederationIssuerRequest{Issuer: entra.IssuerV2(), Kind: "entra"})
		if !client.IsStatus(err, http.StatusConflict) {
			t.Fatalf("trust twice: %v", err)
		}
		_, err = c.AddFederationIssuer(ctx, client.FederationIssuerRequest{Issuer: "https://login.microsoftonline.com/common/v2.0"})
		var p *client.Problem
		if !errors.As(err, &p) || p.Status != 400 || !strings.Contains(err.Error(), "must name one tenant") {
			t.Fatalf("multi-tenant issuer: %v", err)
		}

		reg, err := c.RegisterAgent(ctx, client.RegisterAgentRequest{Name: "fed-api", Namespace: "finance", Owner: "ap",
			Credential: client.CredentialSpec{Type: client.CredentialFederated, FederatedCredentialRequest: client.FederatedCredentialRequest{
				Issuer: entra.IssuerV2(), Subject: "oid-1", Audience: "api://lanyard"}},
			EntraFederation: true})
		if err != nil {
			t.Fatal(err)
		}
		if reg.CredentialType != client.CredentialFederated || !reg.EntraFederation || reg.Credentials[0].Subject != "oid-1" {
			t.Fatalf("registered: %+v", reg.Agent)
		}
		f, err := c.AddFederatedCredential(ctx, reg.ID, client.FederatedCredentialRequest{Issuer: entra.IssuerV2(), Subject: "oid-2", Audience: "api://lanyard", RequireAppToken: true})
		if err != nil || len(f.Credentials) != 2 || f.Subject != reg.ID || f.Issuer != e.base {
			t.Fatalf("add: %+v %v", f, err)
		}
		_, err = c.AddFederatedCredential(ctx, reg.ID, client.FederatedCredentialRequest{Issuer: entra.IssuerV2(), Subject: "oid-2", Audience: "api://lanyard"})
		if !client.IsStatus(err, http.StatusConflict) {
			t.Fatalf("duplicate: %v", err)
		}
		// A federated agent is not rotated.
		if _, err := c.RotateCredential(ctx, reg.ID, client.RotateCredentialRequest{}); !client.IsStatus(err, http.StatusConflict) {
			t.Fatalf("rotate: %v", err)
		}
		f, err = c.RemoveFederatedCredential(ctx, reg.ID, f.Credentials[0].ID)
		if err != nil || len(f.Credentials) != 1 {
			t.Fatalf("remove: %+v %v", f, err)
		}
		if _, err := c.RemoveFederatedCredential(ctx, reg.ID, f.Credentials[0].ID); !client.IsStatus(err, http.StatusConflict) {
			t.Fatalf("remove the last: %v", err)
		}
		if _, err := c.RemoveFederatedCredential(ctx, reg.ID, "crd_nope"); !client.IsStatus(err, http.StatusNotFound) {
			t.Fatalf("remove unknown: %v", err)
		}
		if a, err := c.SetEntraFederation(ctx, reg.ID, false); err != nil || a.EntraFederation {
			t.Fatalf("entra off: %+v %v", a, err)
		}
		// Unknown fields are refused (strict JSON).
		r := e.api(http.MethodPost, "/v1/agents/"+reg.ID+"/federation/credentials", `{"issuer":"x","subject":"y","audience":"z","tenant":"t"}`)
		wantProblem(t, r, http.StatusBadRequest)

		if err := c.RemoveFederationIssuer(ctx, entra.IssuerV2()); err != nil {
			t.Fatal(err)
		}
		if err := c.RemoveFederationIssuer(ctx, entra.IssuerV2()); !client.IsStatus(err, http.StatusNotFound) {
			t.Fatalf("untrust twice: %v", err)
		}
		if list, err := c.FederationIssuers(ctx); err != nil || len(list) != 0 {
			t.Fatalf("issuers: %+v %v", list, err)
		}
		// The credential stays but authenticates nobody: its issuer is no longer trusted.
		tok := entra.Token(t, entratest.TokenOptions{ObjectID: "oid-1", Audience: "api://lanyard"})
		wantOAuthError(t, e.federatedToken(reg.ID, tok), http.StatusUnauthorized, "invalid_client", "is not a trusted federation issuer")
		for _, typ := range []string{"federation.issuer_removed", "credential.federated_removed"} {
			r := e.api(http.MethodGet, "/v1/audit?type="+typ, nil)
			if items, _ := r.json(t)["items"].([]any); len(items) != 1 {
				t.Errorf("%s events: %s", typ, r.body)
			}
		}
	})
}
