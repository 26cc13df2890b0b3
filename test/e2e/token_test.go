package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestQuickstart walks the README's quickstart: register a private_key_jwt agent, get
// a token with a standard OAuth client, verify it through discovery + JWKS with a
// standard OIDC library, introspect it, suspend the agent and watch both the next token
// request and the old token's introspection fail.
func TestQuickstart(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.registerJWT(t, "invoice-triage", nil)

		// A standard client: x/oauth2 clientcredentials, with the assertion as
		// endpoint parameters (it has no private_key_jwt support of its own). The
		// assertion's aud is the issuer, as openid-client and rfc7523bis clients send.
		cc := clientcredentials.Config{
			ClientID: a.id,
			TokenURL: e.base + "/oauth2/token",
			Scopes:   []string{"invoices:read"},
			EndpointParams: url.Values{
				"resource":              {"https://erp.example.com"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {a.key.sign(t, assertion{iss: a.id, aud: []string{e.base}})},
			},
			AuthStyle: oauth2.AuthStyleInParams,
		}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		if tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
			t.Fatalf("token response: type %q expiry %v", tok.TokenType, tok.Expiry)
		}
		if d := time.Until(tok.Expiry); d < 4*time.Minute || d > 5*time.Minute+5*time.Second {
			t.Fatalf("expires in %s, want about 5m (the default)", d)
		}

		// Verify with go-oidc through discovery and the JWKS.
		provider, err := oidc.NewProvider(ctx, e.base)
		if err != nil {
			t.Fatalf("discovery: %v", err)
		}
		verifier := provider.Verifier(&oidc.Config{ClientID: "https://erp.example.com", SupportedSigningAlgs: []string{"ES256", "RS256"}})
		idt, err := verifier.Verify(ctx, tok.AccessToken)
		if err != nil {
			t.Fatalf("verify access token with go-oidc: %v", err)
		}
		var claims struct {
			Iss       string `json:"iss"`
			Sub       string `json:"sub"`
			ClientID  string `json:"client_id"`
			Aud       any    `json:"aud"`
			Scope     any    `json:"scope"`
			Iat       int64  `json:"iat"`
			Nbf       int64  `json:"nbf"`
			Exp       int64  `json:"exp"`
			JTI       string `json:"jti"`
			Namespace string `json:"namespace"`
			Scp       any    `json:"scp"`
		}
		if err := idt.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		if claims.Iss != e.base || claims.Sub != a.id || claims.ClientID != a.id || claims.Namespace != "finance" ||
			claims.Aud != "https://erp.example.com" || claims.Scope != "invoices:read" || claims.JTI == "" ||
			claims.Exp-claims.Iat != 300 || claims.Nbf != claims.Iat || claims.Scp != nil {
			t.Fatalf("claims = %+v", claims)
		}
		hdr := jwtHeader(t, tok.AccessToken)
		if hdr["typ"] != "at+jwt" || hdr["alg"] != "ES256" || hdr["kid"] == "" {
			t.Fatalf("header = %v, want typ at+jwt, alg ES256 and a kid", hdr)
		}

		if got := e.introspect(t, tok.AccessToken); got["active"] != true || got["sub"] != a.id ||
			got["scope"] != "invoices:read" || got["client_id"] != a.id || got["token_type"] != "Bearer" {
			t.Fatalf("introspection = %v", got)
		}

		r := e.api(http.MethodPost, "/v1/agents/"+a.id+"/suspend", map[string]string{"reason": "incident 42"})
		if r.status != http.StatusOK || r.json(t)["status"] != "suspended" {
			t.Fatalf("suspend: %d %s", r.status, r.body)
		}
		wantOAuthError(t, e.tokenJWT(t, a, nil), http.StatusUnauthorized, "invalid_client", "agent is suspended")
		if got := e.introspect(t, tok.AccessToken); got["active"] != false || len(got) != 1 {
			t.Fatalf("introspection after suspend = %v, want only active:false", got)
		}

		// Resuming does not revive tokens that were cut off; new tokens work.
		if r := e.api(http.MethodPost, "/v1/agents/"+a.id+"/resume", nil); r.status != http.StatusOK {
			t.Fatalf("resume: %d %s", r.status, r.body)
		}
		if got := e.introspect(t, tok.AccessToken); got["active"] != false {
			t.Fatalf("a token issued before suspension is active again after resume")
		}
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second))) // next iat second
		r = e.tokenJWT(t, a, url.Values{"scope": {"erp:post"}})
		if r.status != http.StatusOK {
			t.Fatalf("token after resume: %d %s", r.status, r.body)
		}
		if got := e.introspect(t, r.json(t)["access_token"].(string)); got["active"] != true {
			t.Fatalf("fresh token after resume inactive: %v", got)
		}
	})
}

func jwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	_ = json.Unmarshal(b, &h)
	return h
}

// TestClientSecret covers client_secret_basic and client_secret_post with x/oauth2.
func TestClientSecret(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.registerSecret(t, "secret-agent")
		if !strings.HasPrefix(a.secret, "lys_") || len(a.secret) != 4+43 {
			t.Fatalf("secret %q is not lys_ + 256 bits base64url", a.secret)
		}
		for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
			cc := clientcredentials.Config{ClientID: a.id, ClientSecret: a.secret, TokenURL: e.base + "/oauth2/token",
				Scopes: []string{"invoices:read"}, AuthStyle: style}
			tok, err := cc.Token(ctx)
			if err != nil {
				t.Fatalf("auth style %v: %v", style, err)
			}
			if got := e.introspect(t, tok.AccessToken); got["active"] != true || got["aud"].([]any)[0] != e.base {
				t.Fatalf("introspection = %v (aud must default to the issuer)", got)
			}
		}
		wantOAuthError(t, e.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, a.id, a.secret+"x"),
			http.StatusUnauthorized, "invalid_client", "client secret does not match")

		// The secret is never returned again.
		if r := e.api(http.MethodGet, "/v1/agents/"+a.id, nil); strings.Contains(string(r.body), a.secret) || strings.Contains(string(r.body), `"client_secret":`) {
			t.Fatalf("GET agent shows the secret: %s", r.body)
		}
	})
}

// TestTokenRefusals checks each refusal names the failed check and issues nothing.
func TestTokenRefusals(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		a := e.registerJWT(t, "refusals", nil)
		other := newKey(t, jose.ES256)
		other.priv.KeyID = a.key.priv.KeyID // same kid, wrong key
		tokenURL := e.base + "/oauth2/token"
		now := time.Now()

		assertionForm := func(assertion string) url.Values {
			return url.Values{"grant_type": {"client_credentials"}, "client_id": {a.id},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {assertion}}
		}
		replayed := a.key.sign(t, assertion{iss: a.id, aud: []string{tokenURL}})
		if r := e.form("/oauth2/token", assertionForm(replayed), "", ""); r.status != http.StatusOK {
			t.Fatalf("first use of assertion: %d %s", r.status, r.body)
		}

		// alg none and HS256-with-the-public-key are built by hand: no library makes them.
		hdrClaims := func(alg string) (string, string) {
			h, _ := json.Marshal(map[string]string{"alg": alg, "kid": a.key.priv.KeyID, "typ": "JWT"})
			c, _ := json.Marshal(map[string]any{"iss": a.id, "sub": a.id, "aud": tokenURL, "jti": randString(12),
				"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
			return base64.RawURLEncoding.EncodeToString(h), base64.RawURLEncoding.EncodeToString(c)
		}
		h, c := hdrClaims("none")
		algNone := h + "." + c + "."
		h, c = hdrClaims("HS256")
		pubJSON, _ := json.Marshal(a.key.pub)
		mac := hmac.New(sha256.New, pubJSON)
		mac.Write([]byte(h + "." + c))
		hs256 := h + "." + c + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

		cases := []struct {
			name   string
			form   url.Values
			status int
			code   string
			desc   string
		}{
			{"unknown client", func() url.Values {
				v := assertionForm(a.key.sign(t, assertion{iss: "agt_doesnotexist", aud: []string{tokenURL}}))
				v.Set("client_id", "agt_doesnotexist")
				return v
			}(), 401, "invalid_client", "unknown client"},
			{"client_id differs from the assertion", assertionForm(a.key.sign(t, assertion{iss: "agt_doesnotexist", aud: []string{tokenURL}})),
				401, "invalid_client", "client_id does not match the client assertion's sub"},
			{"wrong key", assertionForm(other.sign(t, assertion{iss: a.id, aud: []string{tokenURL}})),
				401, "invalid_client", "signature does not verify"},
			{"expired assertion", assertionForm(a.key.sign(t, assertion{iss: a.id, aud: []string{tokenURL}, iat: now.Add(-3 * time.Minute), exp: now.Add(-2 * time.Minute)})),
				401, "invalid_client", "client assertion expired at"},
			{"lifetime over 5 minutes", assertionForm(a.key.sign(t, assertion{iss: a.id, aud: []string{tokenURL}, iat: now, exp: now.Add(10 * time.Minute)})),
				401, "invalid_client", "lifetime 10m0s exceeds 5m0s"},
			{"replayed jti", assertionForm(replayed), 401, "invalid_client", "jti was already used"},
			{"wrong aud", assertionForm(a.key.sign(t, assertion{iss: a.id, aud: []string{"https://evil.example.com/token"}})),
				401, "invalid_client", "aud must be one of"},
			{"alg none", assertionForm(algNone), 401, "invalid_client", `alg "none" is not allowed`},
			{"HS256 with the public key", assertionForm(hs256), 401, "invalid_client", `alg "HS256" is not allowed`},
			{"sub differs from iss", assertionForm(a.key.sign(t, assertion{iss: a.id, sub: "agt_other", aud: []string{tokenURL}})),
				401, "invalid_client", "iss and sub must both be the client_id"},
			{"no client authentication", url.Values{"grant_type": {"client_credentials"}, "client_id": {a.id}},
				401, "invalid_client", "no client authentication"},
			{"wrong assertion type", func() url.Values {
				v := assertionForm(a.key.sign(t, assertion{iss: a.id, aud: []string{tokenURL}}))
				v.Set("client_assertion_type", "urn:example:saml")
				return v
			}(), 401, "invalid_client", "client_assertion_type must be"},
			{"unsupported grant type", url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type", `grant_type "password" is not supported`},
			{"missing grant type", url.Values{"scope": {"x"}}, 400, "invalid_request", "grant_type is missing"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				wantOAuthError(t, e.form("/oauth2/token", tc.form, "", ""), tc.status, tc.code, tc.desc)
			})
		}

		t.Run("scope not allowed", func(t *testing.T) {
			wantOAuthError(t, e.tokenJWT(t, a, url.Values{"scope": {"invoices:read payroll:write"}}), 400, "invalid_scope", `scope "payroll:write" is not allowed`)
		})
		t.Run("resource not allowed", func(t *testing.T) {
			wantOAuthError(t, e.tokenJWT(t, a, url.Values{"resource": {"https://erp.example.com", "https://hr.example.com"}}), 400, "invalid_target", `resource "https://hr.example.com" is not allowed`)
		})
		t.Run("malformed body", func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader("grant_type=client_credentials&%zz"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			wantOAuthError(t, e.do(req), 400, "invalid_request", "not a valid form")
		})
		t.Run("oversized body", func(t *testing.T) {
			big := url.Values{"grant_type": {"client_credentials"}, "padding": {strings.Repeat("a", 200<<10)}}
			wantOAuthError(t, e.form("/oauth2/token", big, "", ""), http.StatusRequestEntityTooLarge, "invalid_request", "exceeds 65536 bytes")
		})
		t.Run("parameters in the query string", func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, tokenURL+"?grant_type=client_credentials", strings.NewReader("grant_type=client_credentials"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			wantOAuthError(t, e.do(req), 400, "invalid_request", "must be sent in the body")
		})

		// Refusals are audited with the failed check, and issued nothing. Token events
		// are group-committed, so wait for the writer to catch up.
		wantChecks := []string{"unknown_client", "client_id_mismatch", "bad_signature", "assertion_expired", "assertion_lifetime",
			"assertion_replayed", "assertion_audience", "assertion_alg", "assertion_iss_sub", "no_client_auth",
			"bad_assertion_type", "unsupported_grant_type", "no_grant_type", "scope_not_allowed", "resource_not_allowed",
			"malformed_body", "body_too_large", "query_parameters"}
		checks := map[string]bool{}
		e.eventually(t, func() bool {
			for _, ev := range e.auditEvents(t, "type=token.refused&limit=1000") {
				checks[ev.Data["check"].(string)] = true
			}
			for _, w := range wantChecks {
				if !checks[w] {
					return false
				}
			}
			return true
		}, "token.refused events for every check; have %v", checks)
		if n := len(e.auditEvents(t, "type=token.issued&agent_id="+a.id)); n != 1 {
			t.Errorf("%d token.issued events, want 1 (only the first use of the replayed assertion)", n)
		}
	})
}

// TestLifecycleGatesTokens checks only active agents get tokens.
func TestLifecycleGatesTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		cases := []struct {
			name    string
			actions []string
			desc    string
		}{
			{"pending", nil, "agent is pending activation"},
			{"suspended", []string{"activate", "suspend"}, "agent is suspended"},
			{"revoked", []string{"activate", "revoke"}, "agent is revoked"},
			{"decommissioned", []string{"decommission"}, "agent is decommissioned"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				a := e.registerJWT(t, "gate-"+tc.name, map[string]any{"pending": true})
				for _, act := range tc.actions {
					if r := e.api(http.MethodPost, "/v1/agents/"+a.id+"/"+act, map[string]string{"reason": "test"}); r.status != http.StatusOK {
						t.Fatalf("%s: %d %s", act, r.status, r.body)
					}
				}
				wantOAuthError(t, e.tokenJWT(t, a, nil), http.StatusUnauthorized, "invalid_client", tc.desc)
			})
		}
		t.Run("reference measurements require attestation", func(t *testing.T) {
			a := e.registerJWT(t, "needs-attestation", map[string]any{"reference": map[string]any{
				"model_digest": "sha256:" + strings.Repeat("ab", 32)}})
			wantOAuthError(t, e.tokenJWT(t, a, nil), http.StatusBadRequest, "invalid_grant", "attestation missing")
		})
	})
}

// TestRevocation covers RFC 7009 by the agent itself and by an admin.
func TestRevocation(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		a := e.registerJWT(t, "revoker", nil)
		b := e.registerJWT(t, "bystander", nil)
		tokA := e.tokenJWT(t, a, nil).json(t)["access_token"].(string)
		tokB := e.tokenJWT(t, b, nil).json(t)["access_token"].(string)

		auth := func(ag registered) url.Values {
			return url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion": {ag.key.sign(t, assertion{iss: ag.id, aud: []string{e.base + "/oauth2/revoke"}})}}
		}
		// a may not revoke b's token.
		v := auth(a)
		v.Set("token", tokB)
		wantOAuthError(t, e.form("/oauth2/revoke", v, "", ""), 400, "unauthorized_client", "not issued to this client")
		if e.introspect(t, tokB)["active"] != true {
			t.Fatal("a refused revocation changed the token")
		}
		v = auth(a)
		v.Set("token", tokA)
		if r := e.form("/oauth2/revoke", v, "", ""); r.status != http.StatusOK {
			t.Fatalf("revoke own token: %d %s", r.status, r.body)
		}
		if e.introspect(t, tokA)["active"] != false {
			t.Fatal("revoked token still active")
		}
		// Unknown tokens are answered with 200 (RFC 7009 §2.2).
		v = auth(a)
		v.Set("token", "not-a-token")
		if r := e.form("/oauth2/revoke", v, "", ""); r.status != http.StatusOK {
			t.Fatalf("revoke garbage: %d %s", r.status, r.body)
		}
		// An admin may revoke any token.
		req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth2/revoke", strings.NewReader(url.Values{"token": {tokB}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+e.admin)
		if r := e.do(req); r.status != http.StatusOK {
			t.Fatalf("admin revoke: %d %s", r.status, r.body)
		}
		if e.introspect(t, tokB)["active"] != false {
			t.Fatal("admin-revoked token still active")
		}
	})
}

// TestIntrospectionAuth: introspection needs an admin or a resource server agent.
func TestIntrospectionAuth(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		agent := e.registerJWT(t, "plain", nil)
		rs := e.registerJWT(t, "resource-server", map[string]any{"can_introspect": true})
		tok := e.tokenJWT(t, agent, nil).json(t)["access_token"].(string)

		wantOAuthError(t, e.form("/oauth2/introspect", url.Values{"token": {tok}}, "", ""), 401, "invalid_client", "no client authentication")
		as := func(ag registered) url.Values {
			return url.Values{"token": {tok}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion": {ag.key.sign(t, assertion{iss: ag.id, aud: []string{e.base + "/oauth2/introspect"}})}}
		}
		wantOAuthError(t, e.form("/oauth2/introspect", as(agent), "", ""), 403, "unauthorized_client", "can_introspect is false")
		r := e.form("/oauth2/introspect", as(rs), "", "")
		if r.status != 200 || r.json(t)["active"] != true {
			t.Fatalf("resource server introspection: %d %s", r.status, r.body)
		}
		req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth2/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer wrong-token")
		wantOAuthError(t, e.do(req), 401, "invalid_client", "not a valid admin token")
	})
}
