package e2e

import (
	"crypto"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

const cryptoSHA256 = crypto.SHA256

// TestAdminAPI covers the /v1/agents contract: validation, strict JSON, conflicts,
// transitions, pagination, filters, PATCH and authentication.
func TestAdminAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		t.Run("requires the admin token", func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.base+"/v1/agents", nil)
			p := wantProblem(t, e.do(req), 401)
			if !strings.Contains(p["detail"].(string), "Bearer") {
				t.Fatalf("detail = %v", p["detail"])
			}
			req.Header.Set("Authorization", "Bearer nope")
			wantProblem(t, e.do(req), 401)
		})

		t.Run("validation names every bad field", func(t *testing.T) {
			r := e.api(http.MethodPost, "/v1/agents", map[string]any{
				"name": "Bad Name", "namespace": "", "risk_level": "extreme",
				"credential":        map[string]any{"type": "private_key_jwt"},
				"allowed_scopes":    []string{"ok", "has space"},
				"allowed_resources": []string{"relative/path", "https://x.example.com/#frag"},
				"max_token_ttl":     "48h",
			})
			p := wantProblem(t, r, 400)
			got := fieldErrors(p)
			for _, want := range []string{"name", "namespace", "owner", "risk_level", "credential.jwks", "allowed_scopes[1]",
				"allowed_resources[0]", "allowed_resources[1]", "max_token_ttl"} {
				if !slices.Contains(got, want) {
					t.Errorf("no error for field %s; got %v", want, got)
				}
			}
		})

		t.Run("private keys are refused in a JWKS", func(t *testing.T) {
			k := newKey(t, jose.ES256)
			b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.priv}})
			var set map[string]any
			_ = json.Unmarshal(b, &set)
			r := e.api(http.MethodPost, "/v1/agents", map[string]any{"name": "leaky", "namespace": "finance", "owner": "o",
				"credential": map[string]any{"type": "private_key_jwt", "jwks": set}})
			p := wantProblem(t, r, 400)
			if !strings.Contains(string(r.body), "private key material") || !slices.Contains(fieldErrors(p), "credential.jwks") {
				t.Fatalf("body %s", r.body)
			}
		})

		t.Run("strict JSON", func(t *testing.T) {
			cases := map[string]string{
				"unknown field":   `{"name":"a","namespace":"n","owner":"o","credential":{"type":"client_secret"},"colour":"red"}`,
				"trailing data":   `{"name":"a","namespace":"n","owner":"o","credential":{"type":"client_secret"}} {}`,
				"not JSON":        `name=a`,
				"wrong type":      `{"name":42}`,
				"truncated":       `{"name":"a",`,
				"empty":           ``,
				"nested unknown":  `{"name":"a","namespace":"n","owner":"o","credential":{"type":"client_secret","pin":"1"}}`,
				"array for field": `{"name":["a"]}`,
			}
			for name, body := range cases {
				t.Run(name, func(t *testing.T) {
					wantProblem(t, e.api(http.MethodPost, "/v1/agents", body), 400)
				})
			}
			if r := e.api(http.MethodGet, "/v1/agents?namespace=n", nil); strings.Contains(string(r.body), `"name":"a"`) {
				t.Fatal("a rejected registration created an agent")
			}
		})

		t.Run("wrong content type", func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/agents", strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer "+e.admin)
			req.Header.Set("Content-Type", "text/plain")
			wantProblem(t, e.do(req), 415)
		})

		t.Run("oversized body", func(t *testing.T) {
			body := `{"name":"big","namespace":"n","owner":"o","purpose":"` + strings.Repeat("x", 100<<10) + `"}`
			wantProblem(t, e.api(http.MethodPost, "/v1/agents", body), 413)
		})

		t.Run("duplicate name in a namespace", func(t *testing.T) {
			e.registerSecret(t, "twin")
			r := e.api(http.MethodPost, "/v1/agents", map[string]any{"name": "twin", "namespace": "finance", "owner": "o",
				"credential": map[string]any{"type": "client_secret"}})
			p := wantProblem(t, r, 409)
			if !strings.Contains(p["detail"].(string), `"twin" already exists in namespace "finance"`) {
				t.Fatalf("detail = %v", p["detail"])
			}
		})

		t.Run("not found", func(t *testing.T) {
			p := wantProblem(t, e.api(http.MethodGet, "/v1/agents/agt_missing", nil), 404)
			if !strings.Contains(p["detail"].(string), "agt_missing") {
				t.Fatalf("detail = %v", p["detail"])
			}
			wantProblem(t, e.api(http.MethodPost, "/v1/agents/agt_missing/suspend", nil), 404)
			wantProblem(t, e.api(http.MethodPost, "/v1/agents/agt_missing/frobnicate", nil), 404)
		})

		t.Run("invalid transitions are 409 and change nothing", func(t *testing.T) {
			a := e.registerSecret(t, "machine")
			for _, bad := range []string{"activate", "resume"} {
				p := wantProblem(t, e.api(http.MethodPost, "/v1/agents/"+a.id+"/"+bad, nil), 409)
				if !strings.Contains(p["detail"].(string), "cannot "+bad+" an agent that is active") {
					t.Fatalf("detail = %v", p["detail"])
				}
			}
			steps := []struct{ action, status string }{
				{"suspend", "suspended"}, {"resume", "active"}, {"revoke", "revoked"}, {"decommission", "decommissioned"},
			}
			for _, s := range steps {
				r := e.api(http.MethodPost, "/v1/agents/"+a.id+"/"+s.action, map[string]string{"reason": "because " + s.action})
				if r.status != 200 || r.json(t)["status"] != s.status || r.json(t)["status_reason"] != "because "+s.action {
					t.Fatalf("%s: %d %s", s.action, r.status, r.body)
				}
			}
			for _, bad := range []string{"activate", "suspend", "resume", "revoke", "decommission"} {
				wantProblem(t, e.api(http.MethodPost, "/v1/agents/"+a.id+"/"+bad, nil), 409)
			}
			wantProblem(t, e.api(http.MethodPatch, "/v1/agents/"+a.id, map[string]any{"owner": "new"}), 409)
			r := e.api(http.MethodGet, "/v1/agents/"+a.id, nil)
			if m := r.json(t); m["status"] != "decommissioned" || m["credentials"] != nil {
				t.Fatalf("decommissioned agent: %s", r.body)
			}
		})

		t.Run("list with filters and cursor pagination", func(t *testing.T) {
			var ids []string
			for i := 0; i < 5; i++ {
				r := e.api(http.MethodPost, "/v1/agents", map[string]any{"name": fmt.Sprintf("page-%d", i), "namespace": "paging",
					"owner": "team-" + fmt.Sprint(i%2), "credential": map[string]any{"type": "client_secret"}})
				ids = append(ids, r.json(t)["id"].(string))
			}
			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				r := e.api(http.MethodGet, "/v1/agents?namespace=paging&limit=2&cursor="+cursor, nil)
				var page struct {
					Items []struct {
						ID string `json:"id"`
					} `json:"items"`
					Next string `json:"next_cursor"`
				}
				_ = json.Unmarshal(r.body, &page)
				for _, it := range page.Items {
					got = append(got, it.ID)
				}
				if page.Next == "" {
					break
				}
				cursor = page.Next
				if pages > 5 {
					t.Fatal("pagination does not end")
				}
			}
			if !slices.Equal(got, ids) {
				t.Fatalf("paged ids %v, want %v in creation order", got, ids)
			}
			r := e.api(http.MethodGet, "/v1/agents?namespace=paging&owner=team-1", nil)
			if n := strings.Count(string(r.body), `"owner":"team-1"`); n != 2 || strings.Contains(string(r.body), "team-0") {
				t.Fatalf("owner filter: %s", r.body)
			}
			p := wantProblem(t, e.api(http.MethodGet, "/v1/agents?status=sleepy&limit=0&colour=red", nil), 400)
			if f := fieldErrors(p); !slices.Contains(f, "status") || !slices.Contains(f, "limit") || !slices.Contains(f, "colour") {
				t.Fatalf("fields %v", f)
			}
		})

		t.Run("patch", func(t *testing.T) {
			a := e.registerJWT(t, "patchy", nil)
			r := e.api(http.MethodPatch, "/v1/agents/"+a.id, map[string]any{"allowed_scopes": []string{"invoices:read"}, "max_token_ttl": "2m"})
			if r.status != 200 || r.json(t)["max_token_ttl"] != "2m0s" {
				t.Fatalf("patch: %d %s", r.status, r.body)
			}
			// The change applies to the next token at once.
			wantOAuthError(t, e.tokenJWT(t, a, url.Values{"scope": {"erp:post"}}), 400, "invalid_scope", "erp:post")
			tok := e.tokenJWT(t, a, url.Values{"scope": {"invoices:read"}}).json(t)
			if tok["expires_in"].(float64) > 120 {
				t.Fatalf("expires_in %v, want <= 120 after max_token_ttl 2m", tok["expires_in"])
			}
			wantProblem(t, e.api(http.MethodPatch, "/v1/agents/"+a.id, map[string]any{}), 400)
			wantProblem(t, e.api(http.MethodPatch, "/v1/agents/"+a.id, map[string]any{"name": "renamed"}), 400)
		})
	})
}

// TestCredentialRotation: the old credential works through the grace period, and not
// after a zero grace.
func TestCredentialRotation(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		a := e.registerJWT(t, "rotating", nil)
		next := newKey(t, jose.ES256)
		r := e.api(http.MethodPost, "/v1/agents/"+a.id+"/credentials/rotate", map[string]any{"jwks": next.jwks(), "grace": "1h"})
		if r.status != 200 {
			t.Fatalf("rotate: %d %s", r.status, r.body)
		}
		var res struct {
			Agent struct {
				Credentials []struct {
					State string   `json:"state"`
					KIDs  []string `json:"kids"`
				} `json:"credentials"`
			} `json:"agent"`
			GraceUntil string `json:"grace_until"`
		}
		_ = json.Unmarshal(r.body, &res)
		if len(res.Agent.Credentials) != 2 || res.GraceUntil == "" {
			t.Fatalf("rotation result: %s", r.body)
		}
		if r := e.tokenJWT(t, a, nil); r.status != 200 {
			t.Fatalf("old key during grace: %d %s", r.status, r.body)
		}
		a2 := registered{id: a.id, key: next}
		if r := e.tokenJWT(t, a2, nil); r.status != 200 {
			t.Fatalf("new key: %d %s", r.status, r.body)
		}
		// Rotate again with no grace: only the newest key works.
		newest := newKey(t, jose.ES256)
		if r := e.api(http.MethodPost, "/v1/agents/"+a.id+"/credentials/rotate", map[string]any{"jwks": newest.jwks(), "grace": "0s"}); r.status != 200 {
			t.Fatalf("rotate: %d %s", r.status, r.body)
		}
		wantOAuthError(t, e.tokenJWT(t, a2, nil), 401, "invalid_client", "matches no registered key")
		if r := e.tokenJWT(t, registered{id: a.id, key: newest}, nil); r.status != 200 {
			t.Fatalf("newest key: %d %s", r.status, r.body)
		}
		wantProblem(t, e.api(http.MethodPost, "/v1/agents/"+a.id+"/credentials/rotate", map[string]any{}), 400)

		s := e.registerSecret(t, "rotating-secret")
		r = e.api(http.MethodPost, "/v1/agents/"+s.id+"/credentials/rotate", nil)
		newSecret, _ := r.json(t)["client_secret"].(string)
		if r.status != 200 || newSecret == "" || newSecret == s.secret {
			t.Fatalf("rotate secret: %d %s", r.status, r.body)
		}
		for _, sec := range []string{s.secret, newSecret} {
			if r := e.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, s.id, sec); r.status != 200 {
				t.Fatalf("secret during grace: %d %s", r.status, r.body)
			}
		}
	})
}

// TestAuditTrail: every decision is in the chain, and the chain verifies.
func TestAuditTrail(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		a := e.registerJWT(t, "audited", nil)
		e.tokenJWT(t, a, nil)
		e.api(http.MethodPost, "/v1/agents/"+a.id+"/suspend", map[string]string{"reason": "suspicious tool calls"})
		e.tokenJWT(t, a, nil)

		var types []string
		var evs []auditEvent
		want := []string{"agent.registered/success", "token.issued/success", "agent.suspended/success", "token.refused/failure"}
		e.eventually(t, func() bool {
			evs = e.auditEvents(t, "agent_id="+a.id)
			types = types[:0]
			for _, ev := range evs {
				types = append(types, ev.Type+"/"+ev.Outcome)
			}
			return slices.Equal(types, want)
		}, "audit trail %v, want %v", types, want)
		if evs[2].Reason != "suspicious tool calls" || evs[3].Reason != "agent is suspended" || evs[1].Actor != "agent:"+a.id || evs[0].Actor != "admin" {
			t.Fatalf("events: %+v", evs)
		}
		r := e.api(http.MethodGet, "/v1/audit/verify", nil)
		if m := r.json(t); m["ok"] != true || m["events"].(float64) < 4 {
			t.Fatalf("verify: %s", r.body)
		}
	})
}

// TestOperations covers discovery, JWKS, health, readiness and metrics.
func TestOperations(t *testing.T) {
	e := start(t, "")
	r := e.do(mustGet(t, e.base+"/.well-known/oauth-authorization-server"))
	d := r.json(t)
	if d["issuer"] != e.base || d["token_endpoint"] != e.base+"/oauth2/token" ||
		fmt.Sprint(d["grant_types_supported"]) != "[client_credentials]" ||
		!strings.Contains(fmt.Sprint(d["token_endpoint_auth_methods_supported"]), "private_key_jwt") {
		t.Fatalf("discovery: %s", r.body)
	}
	r = e.do(mustGet(t, e.base+"/oauth2/jwks"))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.body, &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("jwks: %v %s", err, r.body)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Use != "sig" || k.KeyID == "" || (k.Algorithm != "ES256" && k.Algorithm != "RS256") {
			t.Fatalf("jwks key %+v", k)
		}
	}
	if r := e.do(mustGet(t, e.base+"/healthz")); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
	if r := e.do(mustGet(t, e.base+"/readyz")); r.status != 200 || !strings.Contains(string(r.body), `"database":"ok"`) {
		t.Fatalf("readyz %d %s", r.status, r.body)
	}
	a := e.registerSecret(t, "metered")
	e.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, a.id, a.secret)
	e.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, a.id, "wrong")
	r = e.do(mustGet(t, e.base+"/metrics"))
	for _, want := range []string{`lanyard_tokens_issued_total{alg="ES256"} 1`, `lanyard_tokens_refused_total{reason="bad_secret"} 1`,
		`lanyard_agents{status="active"} 1`, "lanyard_http_request_duration_seconds_bucket"} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if r.header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on responses")
	}
}

func mustGet(t *testing.T, u string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestHostileURLs: identifiers and filters with NUL or invalid UTF-8 get a 400 on every
// database, never a 500.
func TestHostileURLs(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		for _, path := range []string{"/v1/agents/agt_%00x", "/v1/agents/agt_%ff", "/v1/agents?namespace=a%00b",
			"/v1/agents?cursor=%ff", "/v1/audit?agent_id=%00", "/v1/agents/agt_%00/suspend"} {
			method := http.MethodGet
			if strings.HasSuffix(path, "/suspend") {
				method = http.MethodPost
			}
			wantProblem(t, e.api(method, path, nil), 400)
		}
	})
}
