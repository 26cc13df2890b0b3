package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

var (
	modelDigest  = "sha256:" + strings.Repeat("1a", 32)
	promptDigest = "sha256:" + strings.Repeat("2b", 32)
	toolsDigest  = "sha256:" + strings.Repeat("3c", 32)
)

// attestBody builds a POST /v1/attestations body for agent a with a fresh assertion.
func (e *env) attestBody(t *testing.T, a registered, nonce string, m map[string]string) map[string]any {
	return map[string]any{
		"client_id":             a.id,
		"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
		"client_assertion":      a.key.sign(t, assertion{iss: a.id, aud: []string{e.base + "/v1/attestations"}}),
		"nonce":                 nonce,
		"measurements":          m,
	}
}

// challenge gets a nonce for agent a (form-encoded, aud = the issuer).
func (e *env) challenge(t *testing.T, a registered) string {
	t.Helper()
	r := e.form("/v1/attestations/challenge", url.Values{
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {a.key.sign(t, assertion{iss: a.id, aud: []string{e.base}})},
	}, "", "")
	if r.status != http.StatusOK {
		t.Fatalf("challenge: %d %s", r.status, r.body)
	}
	m := r.json(t)
	if n, _ := m["nonce"].(string); len(n) != 43 || m["expires_at"] == "" {
		t.Fatalf("challenge = %s", r.body)
	}
	return m["nonce"].(string)
}

type verdict struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	ExpiresAt time.Time `json:"expires_at"`
	Token     string    `json:"token"`
	Checks    []struct {
		Name, Outcome, Expected, Actual, Detail string
	} `json:"checks"`
}

func (e *env) attest(t *testing.T, body map[string]any) verdict {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/attestations", strings.NewReader(mustJSON(body)))
	req.Header.Set("Content-Type", "application/json")
	r := e.do(req)
	if r.status != http.StatusCreated {
		t.Fatalf("attest: %d %s", r.status, r.body)
	}
	var v verdict
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (v verdict) failed() map[string]string {
	out := map[string]string{}
	for _, c := range v.Checks {
		if c.Outcome == "fail" {
			out[c.Name] = c.Detail
		}
	}
	return out
}

// TestAttestationGatesTokens: an agent with reference measurements gets a token only
// with a current affirming verdict; the token carries att and does not outlive it; a
// changed measurement is contraindicated and named; on_mismatch suspend suspends.
func TestAttestationGatesTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ref := map[string]any{"model_digest": modelDigest, "prompt_digest": promptDigest, "tool_manifest_digest": toolsDigest}
		a := e.registerJWT(t, "attested", map[string]any{"reference": ref, "attestation_ttl": "2m"})
		good := map[string]string{"model_digest": modelDigest, "prompt_digest": promptDigest, "tool_manifest_digest": toolsDigest}

		wantOAuthError(t, e.tokenJWT(t, a, nil), 400, "invalid_grant", "attestation missing")

		v := e.attest(t, e.attestBody(t, a, e.challenge(t, a), good))
		if v.Status != "affirming" || len(v.failed()) != 0 || v.Token == "" {
			t.Fatalf("verdict %+v", v)
		}
		if d := time.Until(v.ExpiresAt); d < time.Minute || d > 2*time.Minute+5*time.Second {
			t.Fatalf("result expires in %s, want the agent's attestation_ttl (2m)", d)
		}
		r := e.tokenJWT(t, a, nil)
		if r.status != 200 {
			t.Fatalf("token after affirming attestation: %d %s", r.status, r.body)
		}
		claims := jwtClaims(t, r.json(t)["access_token"].(string))
		att, _ := claims["att"].(map[string]any)
		if att["id"] != v.ID || att["model"] != modelDigest || att["prompt"] != promptDigest || att["tools"] != toolsDigest || att["host"] != "none" {
			t.Fatalf("att claim = %v", claims["att"])
		}
		if exp := int64(claims["exp"].(float64)); exp > v.ExpiresAt.Unix() {
			t.Fatalf("token exp %d outlives the attestation (%d)", exp, v.ExpiresAt.Unix())
		}

		// The nonce was single use.
		nonce := e.challenge(t, a)
		e.attest(t, e.attestBody(t, a, nonce, good))
		if f := e.attest(t, e.attestBody(t, a, nonce, good)).failed(); !strings.Contains(f["nonce"], "already used") {
			t.Fatalf("replayed nonce: failed checks %v", f)
		}
		// A nonce issued to another client does not work.
		other := e.registerJWT(t, "other", map[string]any{"reference": ref})
		if f := e.attest(t, e.attestBody(t, a, e.challenge(t, other), good)).failed(); !strings.Contains(f["nonce"], "another client") {
			t.Fatalf("foreign nonce: failed checks %v", f)
		}

		// One changed digest: contraindicated, named, and no token.
		bad := map[string]string{"model_digest": modelDigest, "prompt_digest": "sha256:" + strings.Repeat("ff", 32), "tool_manifest_digest": toolsDigest}
		v = e.attest(t, e.attestBody(t, a, e.challenge(t, a), bad))
		f := v.failed()
		if v.Status != "contraindicated" || len(f) != 1 || f["measurements.prompt"] == "" {
			t.Fatalf("changed prompt: %+v", v)
		}
		wantOAuthError(t, e.tokenJWT(t, a, nil), 400, "invalid_grant", "attestation failed")

		// The agent's page lists the verdicts, newest first, with the failed check.
		r = e.api(http.MethodGet, "/v1/agents/"+a.id+"/attestations", nil)
		var list struct{ Items []verdict }
		_ = json.Unmarshal(r.body, &list)
		if len(list.Items) < 4 || list.Items[0].ID != v.ID || list.Items[0].failed()["measurements.prompt"] == "" {
			t.Fatalf("attestations list: %s", r.body)
		}
		e.eventually(t, func() bool {
			for _, ev := range e.auditEvents(t, "agent_id="+a.id+"&type=attestation.verified&outcome=failure") {
				if strings.Contains(ev.Reason, "measurements.prompt") {
					return true
				}
			}
			return false
		}, "no failed attestation.verified audit event naming measurements.prompt")
	})
}

// TestAttestationOnMismatchSuspend: a contraindicated verdict suspends the agent when
// its policy says so, and its live tokens fail introspection.
func TestAttestationOnMismatchSuspend(t *testing.T) {
	e := start(t, "")
	ref := map[string]any{"model_digest": modelDigest, "on_mismatch": "suspend"}
	a := e.registerJWT(t, "strict", map[string]any{"reference": ref})
	e.attest(t, e.attestBody(t, a, e.challenge(t, a), map[string]string{"model_digest": modelDigest}))
	tok := e.tokenJWT(t, a, nil).json(t)["access_token"].(string)
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	v := e.attest(t, e.attestBody(t, a, e.challenge(t, a), map[string]string{"model_digest": "sha256:" + strings.Repeat("00", 32)}))
	if v.Status != "contraindicated" || v.failed()["measurements.model"] == "" {
		t.Fatalf("verdict %+v", v)
	}
	if st := e.api(http.MethodGet, "/v1/agents/"+a.id, nil).json(t)["status"]; st != "suspended" {
		t.Fatalf("agent status %v, want suspended", st)
	}
	if e.introspect(t, tok)["active"] != false {
		t.Fatal("a token of the suspended agent is still active")
	}
}

// TestAttestationRequestErrors: unauthenticated and malformed requests are refused
// with problem documents, and nothing is stored.
func TestAttestationRequestErrors(t *testing.T) {
	e := start(t, "")
	a := e.registerJWT(t, "errs", map[string]any{"reference": map[string]any{"model_digest": modelDigest}})
	req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/attestations", strings.NewReader(`{"nonce":"x","measurements":{}}`))
	req.Header.Set("Content-Type", "application/json")
	wantProblem(t, e.do(req), 401)
	body := e.attestBody(t, a, e.challenge(t, a), map[string]string{"model_digest": modelDigest})
	body["extra"] = 1
	req, _ = http.NewRequest(http.MethodPost, e.base+"/v1/attestations", strings.NewReader(mustJSON(body)))
	req.Header.Set("Content-Type", "application/json")
	wantProblem(t, e.do(req), 400)
	delete(body, "extra")
	body["measurements"] = map[string]any{"model_digest": modelDigest, "gpu": "h100"}
	req, _ = http.NewRequest(http.MethodPost, e.base+"/v1/attestations", strings.NewReader(mustJSON(body)))
	req.Header.Set("Content-Type", "application/json")
	wantProblem(t, e.do(req), 400)
	r := e.api(http.MethodGet, "/v1/agents/"+a.id+"/attestations", nil)
	if strings.Contains(string(r.body), `"status"`) {
		t.Fatalf("a refused request stored a verdict: %s", r.body)
	}
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64RawURL(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}
