package e2e

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/lanyardhq/lanyard/internal/federation/entratest"
)

// TestFederationOutboundMSAL: Entra ID trusts Lanyard's tokens. Microsoft's own
// library (MSAL Go, a confidential client whose assertion callback fetches a Lanyard
// token) exchanges an agent's Lanyard token at an Entra-shaped token endpoint, which
// validates it the way Entra documents — issuer, subject and audience exactly as in the
// federated identity credential, RS256, key from Lanyard's real discovery and JWKS.
func TestFederationOutboundMSAL(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		entra := entratest.New(t)
		appID := "5d2b7c59-3333-4e1a-9b3c-0000000000aa" // the app registration's client id
		agent := e.registerJWT(t, "entra-bound", map[string]any{"entra_federation": true})

		// Discovery and JWKS are what Entra fetches.
		disc := e.do(mustGet(t, e.base+"/.well-known/openid-configuration")).json(t)
		if algs, _ := disc["id_token_signing_alg_values_supported"].([]any); !slices.Contains(algs, any("RS256")) {
			t.Fatalf("discovery does not list RS256: %v", disc)
		}
		if disc["issuer"] != e.base || disc["jwks_uri"] != e.base+"/oauth2/jwks" {
			t.Fatalf("discovery: %v", disc)
		}
		jwks := e.do(mustGet(t, e.base+"/oauth2/jwks")).json(t)
		for _, k := range jwks["keys"].([]any) {
			if k.(map[string]any)["use"] != "sig" {
				t.Fatalf("JWKS key without use sig: %v", k)
			}
		}

		// The federation view tells the admin what to register in Entra ID.
		fv := e.api(http.MethodGet, "/v1/agents/"+agent.id+"/federation", nil).json(t)
		if fv["issuer"] != e.base || fv["subject"] != agent.id || fv["audience"] != "api://AzureADTokenExchange" || fv["entra_federation"] != true {
			t.Fatalf("federation view: %v", fv)
		}
		entra.AddFederatedCredential(entratest.FederatedCredential{ClientID: appID, Issuer: fv["issuer"].(string), Subject: fv["subject"].(string)})

		var lanyardToken string
		cred := confidential.NewCredFromAssertionCallback(func(ctx context.Context, o confidential.AssertionRequestOptions) (string, error) {
			r := e.tokenJWT(t, agent, url.Values{"resource": {"api://AzureADTokenExchange"}})
			if r.status != http.StatusOK {
				t.Errorf("Lanyard token for Entra: %d %s", r.status, r.body)
				return "", context.Canceled
			}
			lanyardToken = r.json(t)["access_token"].(string)
			return lanyardToken, nil
		})
		app, err := confidential.New(entra.Authority(), appID, cred,
			confidential.WithHTTPClient(entra.TLSClient()), confidential.WithInstanceDiscovery(false))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, err := app.AcquireTokenByCredential(ctx, []string{"https://graph.microsoft.com/.default"})
		if err != nil {
			t.Fatalf("MSAL AcquireTokenByCredential: %v", err)
		}
		at := claimsOf(t, res.AccessToken)
		if at["xms_fed_sub"] != agent.id || at["azp"] != appID {
			t.Fatalf("Entra access token claims: %v", at)
		}

		// What Lanyard sent: RS256 (the agent's own tokens are ES256), aud exactly Entra's,
		// sub the agent id, at most an hour.
		h, c := headerOf(t, lanyardToken), claimsOf(t, lanyardToken)
		if h["alg"] != "RS256" || h["kid"] == "" {
			t.Fatalf("Lanyard token header: %v", h)
		}
		if c["aud"] != "api://AzureADTokenExchange" || c["sub"] != agent.id || c["iss"] != e.base {
			t.Fatalf("Lanyard token claims: %v", c)
		}
		if life := c["exp"].(float64) - c["iat"].(float64); life <= 0 || life > 3600 {
			t.Fatalf("Lanyard token lifetime %vs", life)
		}
		if r := e.tokenJWT(t, agent, nil); headerOf(t, r.json(t)["access_token"].(string))["alg"] != "ES256" {
			t.Fatalf("the agent's other tokens changed algorithm: %s", r.body)
		}

		t.Run("Entra audience must be requested alone", func(t *testing.T) {
			r := e.tokenJWT(t, agent, url.Values{"resource": {"api://AzureADTokenExchange", "https://erp.example.com"}})
			wantOAuthError(t, r, http.StatusBadRequest, "invalid_target", "must be requested alone")
		})
		t.Run("agent without entra_federation", func(t *testing.T) {
			other := e.registerJWT(t, "not-entra", nil)
			r := e.tokenJWT(t, other, url.Values{"resource": {"api://AzureADTokenExchange"}})
			wantOAuthError(t, r, http.StatusBadRequest, "invalid_target", `resource "api://AzureADTokenExchange" is not allowed`)
		})
		t.Run("Entra refuses a subject it does not know", func(t *testing.T) {
			other := e.registerJWT(t, "unknown-to-entra", map[string]any{"entra_federation": true})
			cred := confidential.NewCredFromAssertionCallback(func(ctx context.Context, _ confidential.AssertionRequestOptions) (string, error) {
				return e.tokenJWT(t, other, url.Values{"resource": {"api://AzureADTokenExchange"}}).json(t)["access_token"].(string), nil
			})
			app, err := confidential.New(entra.Authority(), appID, cred,
				confidential.WithHTTPClient(entra.TLSClient()), confidential.WithInstanceDiscovery(false))
			if err != nil {
				t.Fatal(err)
			}
			_, err = app.AcquireTokenByCredential(ctx, []string{"https://graph.microsoft.com/.default"})
			if err == nil || !strings.Contains(err.Error(), "AADSTS700213") {
				t.Fatalf("MSAL with an unregistered subject: %v", err)
			}
		})
		t.Run("flag set and cleared through PATCH, audited", func(t *testing.T) {
			r := e.api(http.MethodPatch, "/v1/agents/"+agent.id, map[string]any{"entra_federation": false})
			if r.status != http.StatusOK || r.json(t)["entra_federation"] != false {
				t.Fatalf("patch: %d %s", r.status, r.body)
			}
			wantOAuthError(t, e.tokenJWT(t, agent, url.Values{"resource": {"api://AzureADTokenExchange"}}),
				http.StatusBadRequest, "invalid_target", "is not allowed")
		})
	})
}
