package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/federation/entratest"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// forEachStoreWith is forEachStore with a configuration change.
func forEachStoreWith(t *testing.T, mod func(*config.Config), fn func(t *testing.T, e *env)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, startWith(t, "", mod)) })
	t.Run("postgres", func(t *testing.T) { fn(t, startWith(t, storetest.PostgresDSN(t), mod)) })
}

// fastRefetch lets a test see a key rotation without waiting a minute.
func fastRefetch(c *config.Config) { c.FederationMinRefetch = 300 * time.Millisecond }

// federatedToken presents an external token as the client assertion of agent id.
func (e *env) federatedToken(id, token string) response {
	e.t.Helper()
	return e.form("/oauth2/token", url.Values{
		"grant_type":            {"client_credentials"},
		"client_id":             {id},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {token},
	}, "", "")
}

// trustIssuer adds iss as a trusted issuer through the admin API.
func (e *env) trustIssuer(t *testing.T, body map[string]any) {
	t.Helper()
	r := e.api(http.MethodPost, "/v1/federation/issuers", body)
	if r.status != http.StatusCreated {
		t.Fatalf("add issuer: %d %s", r.status, r.body)
	}
}

// claimsOf decodes a JWT's payload without verifying it (the tests verify elsewhere).
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func headerOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// TestFederationInboundEntra drives every inbound case of issue 7 against an
// Entra-shaped tenant: an agent registered with a federated credential presents an Entra
// token as its client assertion.
func TestFederationInboundEntra(t *testing.T) {
	forEachStoreWith(t, fastRefetch, func(t *testing.T, e *env) {
		entra := entratest.New(t)
		mi := "6f1a6a0e-1111-4c7e-9a52-000000000001" // the managed identity's object id
		appID := "0b0f0c0d-2222-4f00-8000-00000000000a"

		// An untrusted issuer cannot even be registered.
		r := e.api(http.MethodPost, "/v1/agents", map[string]any{
			"name": "azure-agent", "namespace": "finance", "owner": "ap-platform",
			"credential": map[string]any{"type": "federated", "issuer": entra.IssuerV2(), "subject": mi, "audience": "api://lanyard"},
		})
		p := wantProblem(t, r, http.StatusBadRequest)
		if !strings.Contains(string(r.body), "is not a trusted federation issuer") {
			t.Fatalf("untrusted issuer registration: %v", p)
		}

		e.trustIssuer(t, map[string]any{"issuer": entra.IssuerV2(), "kind": "entra"})
		e.trustIssuer(t, map[string]any{"issuer": entra.IssuerV1(), "kind": "entra"})
		r = e.api(http.MethodPost, "/v1/agents", map[string]any{
			"name": "azure-agent", "namespace": "finance", "owner": "ap-platform",
			"credential": map[string]any{"type": "federated", "issuer": entra.IssuerV2(), "subject": mi,
				"audience": "api://lanyard", "require_app_token": true, "allowed_client_ids": []string{appID}},
			"allowed_scopes": []string{"invoices:read"},
		})
		if r.status != http.StatusCreated {
			t.Fatalf("register federated agent: %d %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		// A second federated credential: the same identity through the v1 issuer.
		r = e.api(http.MethodPost, "/v1/agents/"+id+"/federation/credentials", map[string]any{
			"issuer": entra.IssuerV1(), "subject": mi, "audience": "api://lanyard", "allowed_client_ids": []string{appID},
		})
		if r.status != http.StatusCreated {
			t.Fatalf("add v1 credential: %d %s", r.status, r.body)
		}
		ok := entratest.TokenOptions{ObjectID: mi, Audience: "api://lanyard", AppID: appID}
		with := func(mod func(o *entratest.TokenOptions)) string {
			o := ok
			mod(&o)
			return entra.Token(t, o)
		}

		t.Run("valid v2 token", func(t *testing.T) {
			r := e.federatedToken(id, entra.Token(t, ok))
			if r.status != http.StatusOK {
				t.Fatalf("token: %d %s", r.status, r.body)
			}
			c := claimsOf(t, r.json(t)["access_token"].(string))
			if c["sub"] != id || c["client_id"] != id || c["iss"] != e.base {
				t.Fatalf("claims: %v", c)
			}
		})
		t.Run("valid v1 token", func(t *testing.T) {
			r := e.federatedToken(id, with(func(o *entratest.TokenOptions) { o.Version = 1 }))
			if r.status != http.StatusOK {
				t.Fatalf("token: %d %s", r.status, r.body)
			}
		})
		cases := []struct {
			name, desc string
			token      func() string
		}{
			{"wrong tenant", `is not the tenant`, func() string {
				return with(func(o *entratest.TokenOptions) { o.Tenant = "00000000-0000-0000-0000-0000000000ff" })
			}},
			{"wrong audience", `does not contain the registered audience "api://lanyard"`, func() string {
				return with(func(o *entratest.TokenOptions) { o.Audience = "api://other" })
			}},
			{"expired", "the external token expired at", func() string {
				return with(func(o *entratest.TokenOptions) { o.IssuedAt = time.Now().Add(-2 * time.Hour) })
			}},
			{"not yet valid", "the external token is not valid before", func() string {
				return with(func(o *entratest.TokenOptions) { o.NotBefore = time.Now().Add(10 * time.Minute) })
			}},
			{"alg not allowed", `alg "ES256" is not allowed for issuer ` + entra.IssuerV2() + " (allowed: RS256)", func() string {
				return with(func(o *entratest.TokenOptions) { o.Alg = "ES256" })
			}},
			{"subject not registered", "is not a registered subject of this agent", func() string {
				return with(func(o *entratest.TokenOptions) { o.ObjectID = "6f1a6a0e-1111-4c7e-9a52-0000000000ee" })
			}},
			{"oid differs from sub", `the token's oid "6f1a6a0e-1111-4c7e-9a52-0000000000ee" is not the registered subject`, func() string {
				return with(func(o *entratest.TokenOptions) { o.Subject = mi; o.ObjectID = "6f1a6a0e-1111-4c7e-9a52-0000000000ee" })
			}},
			{"not an app token", `an app-only token is required (idtyp "app")`, func() string {
				return with(func(o *entratest.TokenOptions) { o.IDType = "-" })
			}},
			{"client id not allowed", `the token's azp/appid "0b0f0c0d-2222-4f00-8000-0000000000bb" is not allowed`, func() string {
				return with(func(o *entratest.TokenOptions) { o.AppID = "0b0f0c0d-2222-4f00-8000-0000000000bb" })
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				wantOAuthError(t, e.federatedToken(id, tc.token()), http.StatusUnauthorized, "invalid_client", tc.desc)
			})
		}
		t.Run("issuer not trusted", func(t *testing.T) {
			other := entratest.New(t)
			wantOAuthError(t, e.federatedToken(id, other.Token(t, ok)), http.StatusUnauthorized, "invalid_client",
				`client assertion issuer "`+other.IssuerV2()+`" is not a trusted federation issuer`)
		})
		t.Run("client_id names no federated credential for the issuer", func(t *testing.T) {
			plain := e.registerJWT(t, "keys-only", nil)
			wantOAuthError(t, e.federatedToken(plain.id, entra.Token(t, ok)), http.StatusUnauthorized, "invalid_client",
				"the agent has no federated credential for issuer "+entra.IssuerV2())
		})
		t.Run("replayed assertion", func(t *testing.T) {
			tok := entra.Token(t, ok)
			if r := e.federatedToken(id, tok); r.status != http.StatusOK {
				t.Fatalf("first use: %d %s", r.status, r.body)
			}
			wantOAuthError(t, e.federatedToken(id, tok), http.StatusUnauthorized, "invalid_client", "this external token was already used")
		})
		t.Run("unknown kid then rotation", func(t *testing.T) {
			entra.StartRotation(t)
			wantOAuthError(t, e.federatedToken(id, entra.Token(t, ok)), http.StatusUnauthorized, "invalid_client", "is not in the JWKS of issuer")
			entra.Publish()
			// The refetch caused by an unknown kid is rate limited (300ms here): the new
			// key is accepted once the limit allows one more fetch.
			awaitToken(t, e, id, func() string { return entra.Token(t, ok) })
		})
		t.Run("JWKS endpoint down", func(t *testing.T) {
			entra.SetDown(true)
			// Cached keys keep working.
			if r := e.federatedToken(id, entra.Token(t, ok)); r.status != http.StatusOK {
				t.Fatalf("cached key while the JWKS is down: %d %s", r.status, r.body)
			}
			// A new kid is refused, saying why.
			entra.StartRotation(t)
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := e.federatedToken(id, entra.Token(t, ok))
				d, _ := r.json(t)["error_description"].(string)
				if strings.Contains(d, "its JWKS could not be fetched; try again later") {
					wantOAuthError(t, r, http.StatusUnauthorized, "invalid_client", "is not among the cached keys of issuer "+entra.IssuerV2())
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("new kid while the JWKS is down: %d %s", r.status, r.body)
				}
				time.Sleep(50 * time.Millisecond) // the refetch rate limit, not a race
			}
			// Back up: the rotation completes and the new key is fetched.
			entra.SetDown(false)
			entra.Publish()
			awaitToken(t, e, id, func() string { return entra.Token(t, ok) })
		})
		t.Run("suspended agent", func(t *testing.T) {
			if r := e.api(http.MethodPost, "/v1/agents/"+id+"/suspend", nil); r.status != http.StatusOK {
				t.Fatalf("suspend: %d %s", r.status, r.body)
			}
			defer e.api(http.MethodPost, "/v1/agents/"+id+"/resume", nil)
			wantOAuthError(t, e.federatedToken(id, entra.Token(t, ok)), http.StatusUnauthorized, "invalid_client", "agent is suspended")
		})
		t.Run("attestation gating", func(t *testing.T) {
			ref := map[string]any{"reference": map[string]any{"model_digest": "sha256:" + strings.Repeat("ab", 32)}}
			if r := e.api(http.MethodPatch, "/v1/agents/"+id, ref); r.status != http.StatusOK {
				t.Fatalf("patch reference: %d %s", r.status, r.body)
			}
			wantOAuthError(t, e.federatedToken(id, entra.Token(t, ok)), http.StatusBadRequest, "invalid_grant", "attestation missing")
			if r := e.api(http.MethodPatch, "/v1/agents/"+id, map[string]any{"reference": map[string]any{}}); r.status != http.StatusOK {
				t.Fatalf("clear reference: %d %s", r.status, r.body)
			}
			if r := e.federatedToken(id, entra.Token(t, ok)); r.status != http.StatusOK {
				t.Fatalf("after clearing the reference: %d %s", r.status, r.body)
			}
		})
		t.Run("audited", func(t *testing.T) {
			for _, typ := range []string{"federation.issuer_added", "credential.federated_added"} {
				r := e.api(http.MethodGet, "/v1/audit?type="+typ, nil)
				if items, _ := r.json(t)["items"].([]any); len(items) == 0 {
					t.Errorf("no %s audit event: %s", typ, r.body)
				}
			}
			r := e.api(http.MethodGet, "/v1/audit?type=token.issued&agent_id="+id, nil)
			items, _ := r.json(t)["items"].([]any)
			if len(items) == 0 || items[0].(map[string]any)["data"].(map[string]any)["auth_method"] != "federated" ||
				items[0].(map[string]any)["data"].(map[string]any)["federated_subject"] != mi {
				t.Errorf("token.issued events: %s", r.body)
			}
		})
	})
}

// awaitToken retries until a fresh token is accepted (at most 10s).
func awaitToken(t *testing.T, e *env, id string, token func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.federatedToken(id, token())
		if r.status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("token never accepted: %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond) // the refetch rate limit, not a race
	}
}
