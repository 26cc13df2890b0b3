package oauth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/protocol"
	"github.com/lanyardhq/lanyard/internal/store"
)

// decoded is an access token taken apart after Keys.Verify accepted it.
type decoded struct {
	header map[string]any
	claims map[string]any
}

func (f *fixture) decode(t testing.TB, tok string) decoded {
	t.Helper()
	payload, typ, err := f.keys.Verify(tok)
	if err != nil {
		t.Fatalf("the access token does not verify against Lanyard's keys: %v", err)
	}
	if typ != protocol.TypAccessToken {
		t.Errorf("Verify typ = %q, want %q", typ, protocol.TypAccessToken)
	}
	var d decoded
	hb, err := base64.RawURLEncoding.DecodeString(tok[:strings.IndexByte(tok, '.')])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(hb, &d.header); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&d.claims); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d decoded) num(t testing.TB, name string) int64 {
	t.Helper()
	n, ok := d.claims[name].(json.Number)
	if !ok {
		t.Fatalf("claim %s = %#v, want a number", name, d.claims[name])
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatalf("claim %s = %s, want an integer", name, n)
	}
	return v
}

func TestTokenClaims(t *testing.T) {
	f := newFixture(t, Options{})
	a := f.registerJWT(t, ecKey())
	now := f.clock.Now()

	tr := wantToken(t, f.token(assertionForm(f.assertion(t, a, ecKey()),
		"scope", "tickets:read tickets:write", "resource", "https://api.example.com")))
	d := f.decode(t, tr.AccessToken)

	kid, _ := f.keys.ActiveKID("ES256")
	if d.header["typ"] != "at+jwt" || d.header["alg"] != "ES256" || d.header["kid"] != kid {
		t.Errorf("header = %v; want typ at+jwt, alg ES256, kid %s", d.header, kid)
	}
	want := map[string]any{
		"iss":       testIssuer,
		"sub":       a.ID,
		"client_id": a.ClientID,
		"aud":       "https://api.example.com", // RFC 9068: a string when there is one
		"scope":     "tickets:read tickets:write",
		"namespace": "prod",
	}
	for k, v := range want {
		if d.claims[k] != v {
			t.Errorf("claim %s = %#v, want %#v", k, d.claims[k], v)
		}
	}
	if _, ok := d.claims["scp"]; ok {
		t.Error("token carries fosite's scp list; RFC 9068 wants only the scope string")
	}
	if jti, _ := d.claims["jti"].(string); len(jti) < 16 {
		t.Errorf("jti = %q, want a random identifier", jti)
	}
	iat, nbf, exp := d.num(t, "iat"), d.num(t, "nbf"), d.num(t, "exp")
	if iat != now.Unix() || nbf != iat {
		t.Errorf("iat %d nbf %d; want both %d (now)", iat, nbf, now.Unix())
	}
	if exp-iat != 600 {
		t.Errorf("exp − iat = %d, want the agent's max_token_ttl of 600", exp-iat)
	}
	if tr.ExpiresIn != 600 {
		t.Errorf("expires_in = %d, want 600", tr.ExpiresIn)
	}
	if tr.Scope != "tickets:read tickets:write" {
		t.Errorf("response scope = %q", tr.Scope)
	}
	for k := range d.claims {
		switch k {
		case "iss", "sub", "client_id", "aud", "scope", "iat", "nbf", "exp", "jti", "namespace":
		default:
			t.Errorf("unexpected claim %s = %v", k, d.claims[k])
		}
	}

	// Two tokens never share a jti.
	tr2 := wantToken(t, f.token(assertionForm(f.assertion(t, a, ecKey()))))
	if d2 := f.decode(t, tr2.AccessToken); d2.claims["jti"] == d.claims["jti"] {
		t.Error("two tokens have the same jti")
	}
}

func TestTokenAudience(t *testing.T) {
	tests := []struct {
		name      string
		defAud    string
		resources []string
		audience  string // fosite's audience parameter, accepted as a synonym
		want      any
	}{
		{"no resource: issuer", "", nil, "", testIssuer},
		{"no resource: default audience", "https://default.example.com", nil, "", "https://default.example.com"},
		{"one resource", "", []string{"https://files.example.com"}, "", "https://files.example.com"},
		{"two resources", "", []string{"https://api.example.com", "https://files.example.com"}, "",
			[]any{"https://api.example.com", "https://files.example.com"}},
		{"repeated resource", "", []string{"https://api.example.com", "https://api.example.com"}, "", "https://api.example.com"},
		{"audience parameter", "", nil, "https://files.example.com", "https://files.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{DefaultAudience: tt.defAud})
			a := f.registerJWT(t, ecKey())
			form := assertionForm(f.assertion(t, a, ecKey()))
			for _, r := range tt.resources {
				form.Add("resource", r)
			}
			if tt.audience != "" {
				form.Set("audience", tt.audience)
			}
			d := f.decode(t, wantToken(t, f.token(form)).AccessToken)
			got, _ := json.Marshal(d.claims["aud"])
			want, _ := json.Marshal(tt.want)
			if string(got) != string(want) {
				t.Errorf("aud = %s, want %s", got, want)
			}
		})
	}
}

func TestTokenLifetime(t *testing.T) {
	tests := []struct {
		name     string
		agentTTL string        // the agent's max_token_ttl
		cap      time.Duration // Options.MaxTokenTTL
		want     time.Duration
		bug      string
	}{
		{"agent ttl under the cap", "10m", time.Hour, 10 * time.Minute, ""},
		{"agent ttl of one minute", "1m", time.Hour, time.Minute, ""},
		{"agent ttl equal to the cap", "30m", 30 * time.Minute, 30 * time.Minute, ""},
		{"cap below the 5m default", "10m", 2 * time.Minute, 2 * time.Minute, ""},
		{"cap above the 5m default", "45m", 30 * time.Minute, 30 * time.Minute,
			"grant.go HandleTokenEndpointRequest: a max_token_ttl above Options.MaxTokenTTL falls back to min(5m, cap) instead of being capped at Options.MaxTokenTTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{MaxTokenTTL: tt.cap})
			a := f.registerJWT(t, ecKey(), func(r *lifecycle.RegisterRequest) { r.MaxTokenTTL = tt.agentTTL })
			tr := wantToken(t, f.token(assertionForm(f.assertion(t, a, ecKey()))))
			d := f.decode(t, tr.AccessToken)
			got := time.Duration(d.num(t, "exp")-d.num(t, "iat")) * time.Second
			if got != tt.want && tt.bug != "" {
				t.Fatalf("regression of a fixed bug: %s (got %s, want %s)", tt.bug, got, tt.want)
			}
			if got != tt.want {
				t.Errorf("exp − iat = %s, want %s", got, tt.want)
			}
			if time.Duration(tr.ExpiresIn)*time.Second != tt.want {
				t.Errorf("expires_in = %d, want %d", tr.ExpiresIn, int(tt.want.Seconds()))
			}
		})
	}
}

func TestTokenRS256Agent(t *testing.T) {
	f := newFixture(t, Options{})
	a := f.registerJWT(t, ecKey(), func(r *lifecycle.RegisterRequest) { r.TokenAlg = "RS256" })
	d := f.decode(t, wantToken(t, f.token(assertionForm(f.assertion(t, a, ecKey())))).AccessToken)
	kid, _ := f.keys.ActiveKID("RS256")
	if d.header["alg"] == "ES256" {
		t.Fatal("regression of a fixed bug: grant.go signer.Generate reads alg from fjwt.Headers.ToMap(), which drops \"alg\": every token is signed ES256 whatever the agent's token_alg")
	}
	if d.header["alg"] != "RS256" || d.header["kid"] != kid {
		t.Errorf("header = %v; want RS256 with kid %s", d.header, kid)
	}
}

// TestClientAssertionChecks drives every check of RFC 7523 client authentication
// through the token endpoint with one registered ES256 agent.
func TestClientAssertionChecks(t *testing.T) {
	f := newFixture(t, Options{})
	key := ecKey()
	a := f.registerJWT(t, key)
	secretAgent, _ := f.registerSecret(t)
	now := f.clock.Now()

	with := func(mod func(c map[string]any)) string {
		c := claims(a.ClientID, now)
		mod(c)
		return sign(t, key, jose.ES256, "k1", c)
	}
	replayed := f.assertion(t, a, key)
	wantToken(t, f.token(assertionForm(replayed)))

	tests := []struct {
		name   string
		form   url.Values
		status int
		code   string
		reason string
	}{
		{"replayed jti", assertionForm(replayed), 401, "invalid_client", "assertion_replayed"},
		{"wrong assertion type", func() url.Values {
			v := assertionForm(f.assertion(t, a, key))
			v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			return v
		}(), 401, "invalid_client", "bad_assertion_type"},
		{"type without assertion", func() url.Values {
			v := assertionForm("")
			v.Del("client_assertion")
			return v
		}(), 401, "invalid_client", "no_assertion"},
		{"too large", assertionForm(strings.Repeat("a", maxAssertionBytes+1)), 401, "invalid_client", "assertion_too_large"},
		{"not a JWS", assertionForm("hello"), 401, "invalid_client", "malformed_assertion"},
		{"alg none", assertionForm(unsigned(`{"alg":"none"}`, `{"iss":"`+a.ClientID+`","sub":"`+a.ClientID+`"}`)), 401, "invalid_client", "assertion_alg"},
		{"alg HS256", assertionForm(unsigned(`{"alg":"HS256","kid":"k1"}`, `{}`)), 401, "invalid_client", "assertion_alg"},
		{"wrong signature", assertionForm(sign(t, ecKey2(), jose.ES256, "k1", claims(a.ClientID, now))), 401, "invalid_client", "bad_signature"},
		{"unknown kid", assertionForm(sign(t, key, jose.ES256, "k9", claims(a.ClientID, now))), 401, "invalid_client", "unknown_kid"},
		{"RS256 against an EC key", assertionForm(sign(t, rsaKey(), jose.RS256, "k1", claims(a.ClientID, now))), 401, "invalid_client", "key_alg_mismatch"},
		{"sub differs from iss", assertionForm(with(func(c map[string]any) { c["sub"] = "someone-else" })), 401, "invalid_client", "assertion_iss_sub"},
		{"no iss", assertionForm(with(func(c map[string]any) { delete(c, "iss"); delete(c, "sub") })), 401, "invalid_client", "assertion_iss_sub"},
		{"client_id differs from sub", assertionForm(f.assertion(t, a, key), "client_id", secretAgent.ClientID), 401, "invalid_client", "client_id_mismatch"},
		{"unknown client", assertionForm(with(func(c map[string]any) { c["iss"], c["sub"] = "agt_nobody", "agt_nobody" })), 401, "invalid_client", "unknown_client"},
		{"client id too long", assertionForm(with(func(c map[string]any) {
			long := strings.Repeat("x", 200)
			c["iss"], c["sub"] = long, long
		})), 401, "invalid_client", "unknown_client"},
		{"secret agent with assertion", assertionForm(sign(t, key, jose.ES256, "k1", claims(secretAgent.ClientID, now))), 401, "invalid_client", "wrong_auth_method"},
		{"no exp", assertionForm(with(func(c map[string]any) { delete(c, "exp") })), 401, "invalid_client", "assertion_no_exp"},
		{"expired beyond leeway", assertionForm(with(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(-2*time.Minute).Unix(), now.Add(-31*time.Second).Unix()
		})), 401, "invalid_client", "assertion_expired"},
		{"nbf in the future", assertionForm(with(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })), 401, "invalid_client", "assertion_not_yet_valid"},
		{"iat in the future", assertionForm(with(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(time.Minute).Unix(), now.Add(2*time.Minute).Unix()
		})), 401, "invalid_client", "assertion_iat_future"},
		{"lifetime over 5m", assertionForm(with(func(c map[string]any) { c["exp"] = now.Add(6 * time.Minute).Unix() })), 401, "invalid_client", "assertion_lifetime"},
		{"no iat, exp too far", assertionForm(with(func(c map[string]any) { delete(c, "iat"); c["exp"] = now.Add(6 * time.Minute).Unix() })), 401, "invalid_client", "assertion_lifetime"},
		{"aud of another server", assertionForm(with(func(c map[string]any) { c["aud"] = "https://other.example.com/token" })), 401, "invalid_client", "assertion_audience"},
		{"aud of the introspection endpoint", assertionForm(with(func(c map[string]any) { c["aud"] = testIssuer + "/oauth2/introspect" })), 401, "invalid_client", "assertion_audience"},
		{"no jti", assertionForm(with(func(c map[string]any) { delete(c, "jti") })), 401, "invalid_client", "assertion_no_jti"},
		{"jti too long", assertionForm(with(func(c map[string]any) { c["jti"] = strings.Repeat("j", 257) })), 401, "invalid_client", "assertion_jti_too_long"},
		{"repeated assertion", func() url.Values {
			v := assertionForm(f.assertion(t, a, key))
			v.Add("client_assertion", f.assertion(t, a, key))
			return v
		}(), 400, "invalid_request", "repeated_parameter"},
		{"assertion and secret", assertionForm(f.assertion(t, a, key), "client_secret", "x"), 400, "invalid_request", "multiple_auth_methods"},
		{"scope not allowed", assertionForm(f.assertion(t, a, key), "scope", "tickets:delete"), 400, "invalid_scope", "scope_not_allowed"},
		{"resource not allowed", assertionForm(f.assertion(t, a, key), "resource", "https://evil.example.com"), 400, "invalid_target", "resource_not_allowed"},
		{"empty resource", assertionForm(f.assertion(t, a, key), "resource", ""), 400, "invalid_target", "resource_not_allowed"},
		{"scope repeated", assertionForm(f.assertion(t, a, key), "scope", "tickets:read", "scope", "tickets:write"), 400, "invalid_request", "repeated_parameter"},
		{"no grant type", func() url.Values {
			v := assertionForm(f.assertion(t, a, key))
			v.Del("grant_type")
			return v
		}(), 400, "invalid_request", "no_grant_type"},
		{"password grant", func() url.Values {
			v := assertionForm(f.assertion(t, a, key))
			v.Set("grant_type", "password")
			return v
		}(), 400, "unsupported_grant_type", "unsupported_grant_type"},
		{"no client authentication", url.Values{"grant_type": {"client_credentials"}}, 401, "invalid_client", "no_client_auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.refuse(t, tt.form, tt.status, tt.code, tt.reason)
		})
	}

	// The issuer itself is an accepted aud, as RFC 7523 allows.
	t.Run("aud issuer", func(t *testing.T) {
		wantToken(t, f.token(assertionForm(with(func(c map[string]any) { c["aud"] = []string{"x", testIssuer} }))))
	})
	// Within the leeway an expired assertion still passes (clock skew).
	t.Run("expired within leeway", func(t *testing.T) {
		// Move past the replay cache's start first: it refuses assertions issued
		// before it.
		f.clock.Advance(2 * time.Minute)
		later := f.clock.Now()
		c := claims(a.ClientID, later)
		c["iat"], c["exp"] = later.Add(-time.Minute).Unix(), later.Add(-20*time.Second).Unix()
		wantToken(t, f.token(assertionForm(sign(t, key, jose.ES256, "k1", c))))
	})
}

func TestTokenRequestShape(t *testing.T) {
	f := newFixture(t, Options{})
	a := f.registerJWT(t, ecKey())
	t.Run("GET", func(t *testing.T) {
		req := func(r *http.Request) { r.Method = http.MethodGet }
		f.refuse(t, assertionForm(f.assertion(t, a, ecKey())), 400, "invalid_request", "method", req)
	})
	t.Run("query parameters", func(t *testing.T) {
		req := func(r *http.Request) { r.URL.RawQuery = "client_secret=leaked" }
		f.refuse(t, assertionForm(f.assertion(t, a, ecKey())), 400, "invalid_request", "query_parameters", req)
	})
	t.Run("body too large", func(t *testing.T) {
		req := func(r *http.Request) { r.Body = http.MaxBytesReader(nil, r.Body, 64) }
		f.refuse(t, assertionForm(f.assertion(t, a, ecKey())), 413, "invalid_request", "body_too_large", req)
	})
}

func TestClientSecretAuthentication(t *testing.T) {
	f := newFixture(t, Options{})
	a, secret := f.registerSecret(t)
	jwtAgent := f.registerJWT(t, ecKey())
	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	basic := func(id, pw string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(pw)) }
	}

	t.Run("basic", func(t *testing.T) {
		d := f.decode(t, wantToken(t, f.token(form(), basic(a.ClientID, secret))).AccessToken)
		if d.claims["sub"] != a.ID {
			t.Errorf("sub = %v", d.claims["sub"])
		}
	})
	t.Run("post", func(t *testing.T) {
		wantToken(t, f.token(form("client_id", a.ClientID, "client_secret", secret)))
	})
	t.Run("basic with matching client_id", func(t *testing.T) {
		wantToken(t, f.token(form("client_id", a.ClientID), basic(a.ClientID, secret)))
	})

	tests := []struct {
		name   string
		form   url.Values
		mod    []func(*http.Request)
		status int
		code   string
		reason string
	}{
		{"wrong secret basic", form(), []func(*http.Request){basic(a.ClientID, secret+"x")}, 401, "invalid_client", "bad_secret"},
		{"wrong secret post", form("client_id", a.ClientID, "client_secret", "lys_nope"), nil, 401, "invalid_client", "bad_secret"},
		{"empty password", form(), []func(*http.Request){basic(a.ClientID, "")}, 401, "invalid_client", "bad_secret"},
		{"post without client_id", form("client_secret", secret), nil, 401, "invalid_client", "no_client_id"},
		{"unknown client", form(), []func(*http.Request){basic("agt_nobody", secret)}, 401, "invalid_client", "unknown_client"},
		{"jwt agent with secret", form(), []func(*http.Request){basic(jwtAgent.ClientID, secret)}, 401, "invalid_client", "wrong_auth_method"},
		{"basic and post", form("client_secret", secret), []func(*http.Request){basic(a.ClientID, secret)}, 400, "invalid_request", "multiple_auth_methods"},
		{"client_id mismatch", form("client_id", jwtAgent.ClientID), []func(*http.Request){basic(a.ClientID, secret)}, 400, "invalid_request", "client_id_mismatch"},
		{"basic not form-encoded", form(), []func(*http.Request){func(r *http.Request) { r.SetBasicAuth("%zz", secret) }}, 401, "invalid_client", "malformed_basic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.token(tt.form, tt.mod...)
			wantError(t, rec, tt.status, tt.code)
			if tt.status == 401 && len(tt.mod) > 0 {
				if h := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, "Basic") {
					t.Errorf("WWW-Authenticate = %q; a 401 to Basic credentials must name the Basic scheme", h)
				}
			}
			// Counted under the right check.
			f.refuse(t, tt.form, tt.status, tt.code, tt.reason, tt.mod...)
		})
	}
}

func TestAgentStatusGates(t *testing.T) {
	f := newFixture(t, Options{})
	tests := []struct {
		name    string
		actions []lifecycle.Action
		pending bool
		code    string
		reason  string
	}{
		{"pending", nil, true, "invalid_client", "agent_pending"},
		{"suspended", []lifecycle.Action{lifecycle.Suspend}, false, "invalid_client", "agent_suspended"},
		{"revoked", []lifecycle.Action{lifecycle.Revoke}, false, "invalid_client", "agent_revoked"},
		{"decommissioned", []lifecycle.Action{lifecycle.Decommission}, false, "invalid_client", "agent_decommissioned"},
		{"resumed", []lifecycle.Action{lifecycle.Suspend, lifecycle.Resume}, false, "", ""},
		{"activated", []lifecycle.Action{lifecycle.Activate}, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.registerJWT(t, ecKey(), func(r *lifecycle.RegisterRequest) { r.Pending = tt.pending })
			// Load the client into the cache first: the state change must invalidate it.
			f.token(assertionForm(f.assertion(t, a, ecKey())))
			for _, act := range tt.actions {
				if _, err := f.svc.Transition(t.Context(), "admin", a.ID, act, ""); err != nil {
					t.Fatal(err)
				}
			}
			form := assertionForm(f.assertion(t, a, ecKey()))
			if tt.code == "" {
				wantToken(t, f.token(form))
				return
			}
			f.refuse(t, form, 401, tt.code, tt.reason)
		})
	}
}

func TestAttestationRequired(t *testing.T) {
	f := newFixture(t, Options{})
	a := f.registerJWT(t, ecKey(), func(r *lifecycle.RegisterRequest) {
		r.Reference = &lifecycle.Reference{ModelDigest: "sha256:" + strings.Repeat("ab", 32)}
	})
	f.refuse(t, assertionForm(f.assertion(t, a, ecKey())), 400, "invalid_grant", "attestation_missing")
}

// TestRetiringCredential checks a rotated-out credential works until the end of its
// grace period and not a second longer, even when the client cache would otherwise
// keep the entry far longer.
func TestRetiringCredential(t *testing.T) {
	t.Run("private_key_jwt", func(t *testing.T) {
		f := newFixture(t, Options{ClientCacheTTL: 24 * time.Hour})
		a := f.registerJWT(t, ecKey())
		wantToken(t, f.token(assertionForm(f.assertion(t, a, ecKey()))))

		rot, err := f.svc.RotateCredential(t.Context(), "admin", a.ID, lifecycle.RotateRequest{
			JWKS: jwksOf(t, jose.JSONWebKey{Key: &ecKey2().PublicKey, KeyID: "k2"}), Grace: "1h",
		})
		if err != nil {
			t.Fatal(err)
		}
		withKey := func(key any, kid string) url.Values {
			return assertionForm(sign(t, key, jose.ES256, kid, claims(a.ClientID, f.clock.Now())))
		}
		wantToken(t, f.token(withKey(ecKey(), "k1")))
		wantToken(t, f.token(withKey(ecKey2(), "k2")))

		f.clock.Advance(time.Hour - time.Second)
		wantToken(t, f.token(withKey(ecKey(), "k1")))

		f.clock.Advance(time.Second)
		if !f.clock.Now().Equal(rot.GraceUntil) {
			t.Fatalf("clock %v, grace ends %v", f.clock.Now(), rot.GraceUntil)
		}
		f.refuse(t, withKey(ecKey(), "k1"), 401, "invalid_client", "unknown_kid")
		wantToken(t, f.token(withKey(ecKey2(), "k2")))
	})

	t.Run("client_secret", func(t *testing.T) {
		f := newFixture(t, Options{ClientCacheTTL: 24 * time.Hour})
		a, oldSecret := f.registerSecret(t)
		basic := func(pw string) func(*http.Request) {
			return func(r *http.Request) { r.SetBasicAuth(a.ClientID, pw) }
		}
		form := url.Values{"grant_type": {"client_credentials"}}
		wantToken(t, f.token(form, basic(oldSecret)))

		rot, err := f.svc.RotateCredential(t.Context(), "admin", a.ID, lifecycle.RotateRequest{Grace: "10m"})
		if err != nil {
			t.Fatal(err)
		}
		wantToken(t, f.token(form, basic(oldSecret)))
		wantToken(t, f.token(form, basic(rot.ClientSecret)))
		f.clock.Advance(10*time.Minute - time.Second)
		wantToken(t, f.token(form, basic(oldSecret)))
		f.clock.Advance(time.Second)
		f.refuse(t, form, 401, "invalid_client", "bad_secret", basic(oldSecret))
		wantToken(t, f.token(form, basic(rot.ClientSecret)))
	})

	t.Run("grace 0s", func(t *testing.T) {
		f := newFixture(t, Options{ClientCacheTTL: 24 * time.Hour})
		a := f.registerJWT(t, ecKey())
		wantToken(t, f.token(assertionForm(f.assertion(t, a, ecKey()))))
		if _, err := f.svc.RotateCredential(t.Context(), "admin", a.ID, lifecycle.RotateRequest{
			JWKS: jwksOf(t, jose.JSONWebKey{Key: &ecKey2().PublicKey, KeyID: "k2"}), Grace: "0s",
		}); err != nil {
			t.Fatal(err)
		}
		f.refuse(t, assertionForm(f.assertion(t, a, ecKey())), 401, "invalid_client", "unknown_kid")
	})
}

func TestTokenAudited(t *testing.T) {
	f := newFixture(t, Options{})
	a := f.registerJWT(t, ecKey())
	assertion := f.assertion(t, a, ecKey())
	d := f.decode(t, wantToken(t, f.token(assertionForm(assertion, "scope", "tickets:read"))).AccessToken)
	f.refuse(t, assertionForm(assertion), 401, "invalid_client", "assertion_replayed")

	var issued, refused []store.AuditEvent
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if issued, err = f.st.ListAudit(t.Context(), store.AuditFilter{Type: "token.issued"}); err != nil {
			t.Fatal(err)
		}
		if refused, err = f.st.ListAudit(t.Context(), store.AuditFilter{Type: "token.refused"}); err != nil {
			t.Fatal(err)
		}
		if len(issued) > 0 && len(refused) > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond) // the log group-commits; poll until it has
	}
	if len(issued) != 1 || len(refused) != 1 {
		t.Fatalf("audit has %d token.issued and %d token.refused events, want 1 each", len(issued), len(refused))
	}
	var data map[string]any
	if err := json.Unmarshal(issued[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if issued[0].AgentID != a.ID || issued[0].Actor != "agent:"+a.ID || data["jti"] != d.claims["jti"] ||
		data["auth_method"] != protocol.AuthPrivateKeyJWT || !slices.Equal(toStrings(data["scope"]), []string{"tickets:read"}) {
		t.Errorf("token.issued = %+v, data %v", issued[0], data)
	}
	if err := json.Unmarshal(refused[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if refused[0].AgentID != "" || data["check"] != "assertion_replayed" || data["error"] != "invalid_client" {
		t.Errorf("token.refused = %+v, data %v; an unauthenticated refusal names no agent", refused[0], data)
	}
	if strings.Contains(string(refused[0].Data), assertion) {
		t.Error("the refusal event stores the client assertion")
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestAttestationLifetime follows one attested agent through the life of its verdicts:
// a token's exp is capped by the verdict's expiry, the token carries att, a verdict
// renewed before expiry continues seamlessly, an expired verdict refuses tokens, and a
// contraindicated verdict refuses them even while an older affirming one is unexpired.
func TestAttestationLifetime(t *testing.T) {
	f := newFixture(t, Options{})
	key := ecKey()
	model := "sha256:" + strings.Repeat("ab", 32)
	a := f.registerJWT(t, key, func(r *lifecycle.RegisterRequest) {
		r.Reference = &lifecycle.Reference{ModelDigest: model}
		r.MaxTokenTTL = "1h"
	})
	seq := 0
	verdict := func(status string, ttl time.Duration) *store.AttestationResult {
		t.Helper()
		seq++
		now := f.clock.Now()
		r := &store.AttestationResult{
			ID: "att_" + strings.Repeat("0", 30) + strconv.Itoa(seq), AgentID: a.ID, Status: status, Host: "none",
			Measurements: []byte(`{"model_digest":"` + model + `"}`), Checks: []byte(`[]`),
			IssuedAt: now, ExpiresAt: now.Add(ttl),
		}
		if err := f.st.CreateAttestation(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		f.p.Invalidate(a)
		return r
	}
	token := func() decoded {
		t.Helper()
		return f.decode(t, wantToken(t, f.token(assertionForm(f.assertion(t, a, key)))).AccessToken)
	}

	first := verdict(store.AttestationAffirming, 10*time.Minute)
	d := token()
	if exp := d.num(t, "exp"); exp != first.ExpiresAt.Unix() {
		t.Errorf("exp = %d, want the verdict's expiry %d (max_token_ttl is 1h, the verdict lasts 10m)", exp, first.ExpiresAt.Unix())
	}
	att, _ := d.claims["att"].(map[string]any)
	if att["id"] != first.ID || att["model"] != model || att["host"] != "none" {
		t.Errorf("att = %v, want id %s, model %s, host none", att, first.ID, model)
	}

	// Renewed at minute 8: the next token carries the new verdict and its longer cap.
	f.clock.Advance(8 * time.Minute)
	second := verdict(store.AttestationAffirming, 10*time.Minute)
	d = token()
	if att, _ := d.claims["att"].(map[string]any); att["id"] != second.ID {
		t.Errorf("after re-attesting, att.id = %v, want %s", att["id"], second.ID)
	}
	if exp := d.num(t, "exp"); exp != second.ExpiresAt.Unix() {
		t.Errorf("exp = %d, want %d", exp, second.ExpiresAt.Unix())
	}

	// The cached entry must not outlive the verdict, even within the client cache TTL.
	f.clock.Advance(10*time.Minute + time.Second)
	f.refuse(t, assertionForm(f.assertion(t, a, key)), 400, "invalid_grant", "attestation_expired")

	verdict(store.AttestationAffirming, 10*time.Minute)
	token()
	verdict(store.AttestationContraindicated, 10*time.Minute)
	f.refuse(t, assertionForm(f.assertion(t, a, key)), 400, "invalid_grant", "attestation_failed")
}
