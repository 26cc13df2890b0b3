package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const testAdminToken = "adm_test_token"

// adminServer starts a server that checks the admin bearer token and hands every
// request to h.
func adminServer(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer "+testAdminToken {
			t.Errorf("%s %s: Authorization = %q, want the admin bearer token", r.Method, r.URL.Path, got)
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return New(srv.URL, testAdminToken, srv.Client())
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func writeProblem(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

const agentJSON = `{"id":"agt_1","client_id":"cli_1","name":"invoice-triage","namespace":"finance",
"owner":"ap","purpose":"triage","risk_level":"medium","status":"active","token_alg":"ES256",
"credential_type":"private_key_jwt","credentials":[{"id":"crd_1","type":"private_key_jwt","state":"active",
"created_at":"2026-01-02T03:04:05Z","kids":["k1"]}],"allowed_scopes":["invoices:read"],
"allowed_resources":["https://erp.example.com"],"max_token_ttl":"5m0s","attestation_ttl":"10m0s",
"can_introspect":false,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z","future_field":1}`

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, s := range []string{"localhost:8080", "ftp://x", "http://", "http://h/?q=1"} {
		if _, err := ParseBaseURL(s); err == nil {
			t.Errorf("ParseBaseURL(%q) succeeded, want an error", s)
		}
	}
	u, err := ParseBaseURL("http://h:1/prefix/")
	if err != nil || u.String() != "http://h:1/prefix" {
		t.Fatalf("ParseBaseURL trailing slash: %v %v", u, err)
	}
}

func TestRegisterAgent(t *testing.T) {
	ttl := Duration(5 * time.Minute)
	c := adminServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v1/agents" {
			t.Errorf("got %s %s, want POST /v1/agents", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if body["max_token_ttl"] != "5m0s" || body["name"] != "invoice-triage" {
			t.Errorf("body = %v", body)
		}
		cred := body["credential"].(map[string]any)
		if cred["type"] != "client_secret" || cred["jwks"] != nil {
			t.Errorf("credential = %v", cred)
		}
		if _, ok := body["pending"]; ok {
			t.Errorf("pending=false should be omitted, body = %v", body)
		}
		writeJSON(w, 201, strings.TrimSuffix(agentJSON, "}")+`,"client_secret":"s3cr3t"}`)
	})
	res, err := c.RegisterAgent(context.Background(), RegisterAgentRequest{
		Name: "invoice-triage", Namespace: "finance",
		Credential:  CredentialSpec{Type: CredentialClientSecret},
		MaxTokenTTL: &ttl,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "agt_1" || res.ClientSecret != "s3cr3t" || res.MaxTokenTTL != ttl ||
		len(res.Credentials) != 1 || res.Credentials[0].KIDs[0] != "k1" {
		t.Errorf("decoded %+v", res)
	}
	if !strings.Contains(string(res.Raw), "future_field") {
		t.Errorf("Raw lost unknown fields: %s", res.Raw)
	}
}

func TestProblemDecoding(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantStatus  int
		wantInError []string
	}{
		{
			name: "validation problem with field errors", status: 400, contentType: "application/problem+json",
			body: `{"type":"about:blank","title":"Bad Request","status":400,"detail":"the agent is invalid",
				"errors":[{"field":"risk_level","detail":"must be one of low, medium, high, critical"},{"field":"name","detail":"is required"}]}`,
			wantStatus:  400,
			wantInError: []string{"400 Bad Request: the agent is invalid", "\n  - risk_level: must be one of", "\n  - name: is required"},
		},
		{
			name: "conflict", status: 409, contentType: "application/problem+json",
			body:        `{"title":"Conflict","status":409,"detail":"agent agt_1 is revoked; it cannot be resumed"}`,
			wantStatus:  409,
			wantInError: []string{"409 Conflict: agent agt_1 is revoked"},
		},
		{
			name: "html from a proxy", status: 502, contentType: "text/html",
			body: "<html>bad gateway</html>", wantStatus: 502,
			wantInError: []string{"502 Bad Gateway: <html>bad gateway</html>"},
		},
		{
			name: "json that is not a problem", status: 401, contentType: "application/json",
			body: `{"message":"nope"}`, wantStatus: 401,
			wantInError: []string{"401 Unauthorized", `{"message":"nope"}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := adminServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			_, err := c.GetAgent(context.Background(), "agt_1")
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("err = %v (%T), want *Problem", err, err)
			}
			if p.Status != tt.wantStatus || !IsStatus(err, tt.wantStatus) {
				t.Errorf("status = %d, want %d", p.Status, tt.wantStatus)
			}
			for _, s := range tt.wantInError {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err.Error(), s)
				}
			}
		})
	}
}

func TestAllAgentsFollowsCursor(t *testing.T) {
	calls := 0
	c := adminServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls++
		q := r.URL.Query()
		if q.Get("namespace") != "finance" || q.Get("status") != "active" || q.Get("limit") != "1" || q.Has("owner") {
			t.Errorf("query = %v", q)
		}
		switch q.Get("cursor") {
		case "":
			writeJSON(w, 200, `{"items":[`+agentJSON+`],"next_cursor":"c2"}`)
		case "c2":
			writeJSON(w, 200, `{"items":[{"id":"agt_2"}]}`)
		default:
			t.Errorf("unexpected cursor %q", q.Get("cursor"))
		}
	})
	var ids []string
	for a, err := range c.AllAgents(context.Background(), ListAgentsOptions{Namespace: "finance", Status: "active", Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	if strings.Join(ids, ",") != "agt_1,agt_2" || calls != 2 {
		t.Errorf("ids = %v after %d calls", ids, calls)
	}
}

func TestTransition(t *testing.T) {
	c := adminServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v1/agents/agt_1/suspend" {
			t.Errorf("got %s %s", r.Method, r.URL.Path)
		}
		var body map[string]string
		json.NewDecoder(r.Body).Decode(&body)
		if body["reason"] == "bad" {
			writeProblem(w, 409, `{"title":"Conflict","status":409,"detail":"agent is suspended already"}`)
			return
		}
		if body["reason"] != "incident 42" {
			t.Errorf("reason = %q", body["reason"])
		}
		writeJSON(w, 200, strings.Replace(agentJSON, `"active","token_alg"`, `"suspended","token_alg"`, 1))
	})
	a, err := c.Transition(context.Background(), "agt_1", ActionSuspend, "incident 42")
	if err != nil || a.Status != StatusSuspended {
		t.Fatalf("Transition = %+v, %v", a, err)
	}
	_, err = c.Transition(context.Background(), "agt_1", ActionSuspend, "bad")
	if !IsStatus(err, 409) {
		t.Errorf("err = %v, want 409", err)
	}
	if _, err := c.Transition(context.Background(), "agt_1", "delete", ""); err == nil {
		t.Error("unknown action accepted")
	}
}

func TestUpdateAgentSendsOnlySetFields(t *testing.T) {
	c := adminServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != "PATCH" || string(b) != `{"allowed_scopes":[],"can_introspect":false}` {
			t.Errorf("%s body = %s", r.Method, b)
		}
		writeJSON(w, 200, agentJSON)
	})
	no, empty := false, []string{}
	if _, err := c.UpdateAgent(context.Background(), "agt_1", UpdateAgentRequest{AllowedScopes: &empty, CanIntrospect: &no}); err != nil {
		t.Fatal(err)
	}
}

func TestRotateCredential(t *testing.T) {
	grace := Duration(24 * time.Hour)
	c := adminServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/agents/agt_1/credentials/rotate" || string(b) != `{"grace":"24h0m0s"}` {
			t.Errorf("%s body = %s", r.URL.Path, b)
		}
		writeJSON(w, 200, `{"agent":`+agentJSON+`,"client_secret":"new","grace_until":"2026-01-03T03:04:05Z"}`)
	})
	res, err := c.RotateCredential(context.Background(), "agt_1", RotateCredentialRequest{Grace: &grace})
	if err != nil {
		t.Fatal(err)
	}
	if res.Agent.ID != "agt_1" || res.ClientSecret != "new" || res.GraceUntil.Day() != 3 || len(res.Raw) == 0 {
		t.Errorf("decoded %+v", res)
	}
}

func TestAudit(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := adminServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/audit":
			q := r.URL.Query()
			if q.Get("agent_id") != "agt_1" || q.Get("since") != "2026-01-02T03:04:05Z" || q.Get("outcome") != "failure" {
				t.Errorf("query = %v", q)
			}
			writeJSON(w, 200, `{"items":[{"seq":7,"id":"evt_7","time":"2026-01-02T03:04:05Z","type":"token.refused",
				"actor":"agent:agt_1","agent_id":"agt_1","outcome":"failure","reason":"agent suspended","data":{"scope":"x"},
				"prev_hash":"aa","hash":"bb"}]}`)
		case "/v1/audit/verify":
			writeJSON(w, 200, `{"ok":false,"events":12,"broken":{"seq":7,"reason":"hash mismatch"}}`)
		default:
			t.Errorf("unexpected path %s", r.URL.Path)
		}
	})
	page, err := c.ListAudit(context.Background(), ListAuditOptions{AgentID: "agt_1", Outcome: "failure", Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].Seq != 7 || string(page.Items[0].Data) != `{"scope":"x"}` {
		t.Errorf("page = %+v", page)
	}
	v, err := c.VerifyAudit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || v.Events != 12 || v.Broken == nil || v.Broken.Seq != 7 || v.Broken.Reason != "hash mismatch" {
		t.Errorf("verify = %+v", v)
	}
}

func TestDurationJSON(t *testing.T) {
	for in, want := range map[string]time.Duration{`"5m"`: 5 * time.Minute, `"10m0s"`: 10 * time.Minute, `300`: 5 * time.Minute, `""`: 0} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", in, d, err, want)
		}
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Error(`Unmarshal("soon") succeeded`)
	}
}

// ExampleClient_RegisterAgent registers a client_secret agent and shows the secret,
// which the server returns only this once.
func ExampleClient_RegisterAgent() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		io.WriteString(w, `{"id":"agt_01","client_id":"agt_01","name":"invoice-triage","namespace":"finance","status":"active","client_secret":"ZmFrZQ"}`)
	}))
	defer srv.Close()

	c := New(srv.URL, "admin-token", nil)
	res, err := c.RegisterAgent(context.Background(), RegisterAgentRequest{
		Name: "invoice-triage", Namespace: "finance", Owner: "ap-platform", RiskLevel: RiskMedium,
		Credential:    CredentialSpec{Type: CredentialClientSecret},
		AllowedScopes: []string{"invoices:read"},
	})
	if err != nil {
		fmt.Println("register:", err)
		return
	}
	fmt.Println(res.ID, res.Status, res.ClientSecret)
	// Output: agt_01 active ZmFrZQ
}
