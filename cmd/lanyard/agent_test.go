package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

const cliAdminToken = "adm_cli_test"

// cliRun runs the client commands (not serve/migrate, which other files own) with args
// and returns what they printed.
func cliRun(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "lanyard", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newKeygenCmd(), newAgentCmd(), newTokenCmd(), newAuditCmd())
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// cliFakeAdmin starts a server for the /v1 API, points the CLI at it through the
// environment, and routes "METHOD /path" to handlers.
func cliFakeAdmin(t *testing.T, routes map[string]http.HandlerFunc) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+cliAdminToken {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(401)
			io.WriteString(w, `{"title":"Unauthorized","status":401,"detail":"admin token missing or wrong"}`)
			return
		}
		h, ok := routes[r.Method+" "+r.URL.Path]
		if !ok {
			t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv(envURL, srv.URL)
	t.Setenv(envAdminToken, cliAdminToken)
}

// cliHasRow reports whether out has the aligned line "key:   value".
func cliHasRow(out, key, value string) bool {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `: +` + regexp.QuoteMeta(value) + `$`).MatchString(out)
}

func cliReply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ct := "application/json"
		if status >= 400 {
			ct = "application/problem+json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

const cliAgent = `{"id":"agt_01","client_id":"agt_01","name":"invoice-triage","namespace":"finance","owner":"ap-platform",
"purpose":"Triage invoices","risk_level":"medium","status":"active","token_alg":"ES256","credential_type":"private_key_jwt",
"credentials":[{"id":"crd_1","type":"private_key_jwt","state":"active","created_at":"2026-01-02T03:04:05Z","kids":["kid1"]}],
"allowed_scopes":["invoices:read","erp:post"],"allowed_resources":[],"max_token_ttl":"5m0s","attestation_ttl":"10m0s",
"can_introspect":false,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`

func TestAgentRegisterPrivateKeyJWT(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "agent")
	if _, _, err := cliRun(t, "keygen", "--out", out); err != nil {
		t.Fatal(err)
	}
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"POST /v1/agents": func(w http.ResponseWriter, r *http.Request) {
			var body map[string]any
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			cred := body["credential"].(map[string]any)
			keys := cred["jwks"].(map[string]any)["keys"].([]any)
			key := keys[0].(map[string]any)
			if cred["type"] != "private_key_jwt" || len(keys) != 1 || key["d"] != nil || key["kid"] == "" {
				t.Errorf("credential = %v", cred)
			}
			if body["max_token_ttl"] != "5m0s" || body["pending"] != true || body["risk_level"] != "medium" {
				t.Errorf("body = %v", body)
			}
			if s := body["allowed_scopes"].([]any); len(s) != 2 || s[1] != "erp:post" {
				t.Errorf("scopes = %v", s)
			}
			cliReply(201, cliAgent)(w, r)
		},
	})
	stdout, stderr, err := cliRun(t, "agent", "register", "--name", "invoice-triage", "--namespace", "finance",
		"--risk", "medium", "--jwks", out+".jwks.json", "--scope", "invoices:read", "--scope", "erp:post",
		"--max-token-ttl", "5m", "--pending")
	if err != nil {
		t.Fatalf("register: %v\n%s", err, stderr)
	}
	for _, want := range []string{"ID:", "agt_01", "Allowed scopes:", "invoices:read, erp:post", "kids kid1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stderr, "secret") {
		t.Errorf("secret warning for a key agent: %s", stderr)
	}
}

func TestAgentRegisterRefusesPrivateJWKS(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "agent")
	if _, _, err := cliRun(t, "keygen", "--out", out); err != nil {
		t.Fatal(err)
	}
	cliFakeAdmin(t, nil)
	_, _, err := cliRun(t, "agent", "register", "--name", "a", "--namespace", "n", "--jwks", out+".jwk")
	if err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("err = %v, want a refusal to send a private key", err)
	}
}

func TestAgentRegisterSecretShownOnceWithWarning(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"POST /v1/agents": cliReply(201, strings.TrimSuffix(cliAgent, "}")+`,"client_secret":"c2VjcmV0"}`),
	})
	stdout, stderr, err := cliRun(t, "agent", "register", "--name", "a", "--namespace", "n", "--secret")
	if err != nil {
		t.Fatal(err)
	}
	if !cliHasRow(stdout, "Client secret", "c2VjcmV0") || !strings.Contains(stderr, "shown only this once") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	stdout, stderr, err = cliRun(t, "agent", "register", "--name", "a", "--namespace", "n", "--secret", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(stdout), &v); err != nil || v["client_secret"] != "c2VjcmV0" {
		t.Errorf("--json output %q: %v", stdout, err)
	}
	if !strings.Contains(stderr, "shown only this once") {
		t.Errorf("no warning with --json: %q", stderr)
	}
}

func TestAgentRegisterFlagErrors(t *testing.T) {
	cliFakeAdmin(t, nil)
	for _, args := range [][]string{
		{"agent", "register", "--name", "a", "--namespace", "n"},
		{"agent", "register", "--name", "a", "--namespace", "n", "--secret", "--jwks", "x"},
		{"agent", "register", "--namespace", "n", "--secret"},
	} {
		if _, _, err := cliRun(t, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestAgentValidationProblemIsShown(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"POST /v1/agents": cliReply(400, `{"title":"Bad Request","status":400,"detail":"the registration is invalid",
			"errors":[{"field":"risk_level","detail":"must be low, medium, high or critical"}]}`),
	})
	_, _, err := cliRun(t, "agent", "register", "--name", "a", "--namespace", "n", "--secret", "--risk", "extreme")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"register agent", "400 Bad Request: the registration is invalid", "risk_level: must be low"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestAgentNeedsAdminToken(t *testing.T) {
	t.Setenv(envURL, "http://127.0.0.1:1")
	t.Setenv(envAdminToken, "")
	_, _, err := cliRun(t, "agent", "get", "agt_1")
	if err == nil || !strings.Contains(err.Error(), envAdminToken) {
		t.Fatalf("err = %v", err)
	}
}

func TestAgentListTableAndPaging(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"GET /v1/agents": func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if q.Get("namespace") != "finance" {
				t.Errorf("query = %v", q)
			}
			if q.Get("cursor") == "" {
				cliReply(200, `{"items":[`+cliAgent+`],"next_cursor":"agt_01"}`)(w, r)
				return
			}
			cliReply(200, `{"items":[{"id":"agt_02","name":"second\u001b[31m","namespace":"finance","status":"suspended"}]}`)(w, r)
		},
	})
	stdout, stderr, err := cliRun(t, "agent", "list", "--namespace", "finance")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[1], "invoice-triage") {
		t.Errorf("table:\n%s", stdout)
	}
	// Columns line up: STATUS starts at the same offset in the header and the row.
	if strings.Index(lines[0], "STATUS") != strings.Index(lines[1], "active") {
		t.Errorf("columns not aligned:\n%s", stdout)
	}
	if !strings.Contains(stderr, "--cursor agt_01") {
		t.Errorf("no paging hint: %q", stderr)
	}

	stdout, _, err = cliRun(t, "agent", "list", "--namespace", "finance", "--all")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "agt_02") || strings.Contains(stdout, "\x1b") {
		t.Errorf("--all output (control characters must be quoted):\n%q", stdout)
	}

	stdout, _, err = cliRun(t, "agent", "list", "--namespace", "finance", "--all", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(stdout), &page); err != nil || len(page.Items) != 2 {
		t.Errorf("--all --json: %v\n%s", err, stdout)
	}
}

func TestAgentTransitions(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"POST /v1/agents/agt_01/suspend": func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if string(b) != `{"reason":"incident 42"}` {
				t.Errorf("body = %s", b)
			}
			cliReply(200, strings.Replace(cliAgent, `"status":"active"`, `"status":"suspended"`, 1))(w, r)
		},
		"POST /v1/agents/agt_01/resume": cliReply(409, `{"title":"Conflict","status":409,"detail":"agent agt_01 is revoked; only suspended agents can be resumed"}`),
	})
	stdout, _, err := cliRun(t, "agent", "suspend", "agt_01", "--reason", "incident 42")
	if err != nil || stdout != "agent agt_01 is now suspended\n" {
		t.Errorf("suspend: %q, %v", stdout, err)
	}
	_, _, err = cliRun(t, "agent", "resume", "agt_01")
	if err == nil || !strings.Contains(err.Error(), "409 Conflict: agent agt_01 is revoked") {
		t.Errorf("resume: %v", err)
	}
}

func TestAgentRotateSecret(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"POST /v1/agents/agt_01/credentials/rotate": func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if string(b) != `{"grace":"1h0m0s"}` {
				t.Errorf("body = %s", b)
			}
			cliReply(200, `{"agent":`+cliAgent+`,"client_secret":"bmV3","grace_until":"2026-01-02T04:04:05Z"}`)(w, r)
		},
	})
	stdout, stderr, err := cliRun(t, "agent", "rotate", "agt_01", "--grace", "1h")
	if err != nil {
		t.Fatal(err)
	}
	if !cliHasRow(stdout, "Old credential until", "2026-01-02T04:04:05Z") ||
		!cliHasRow(stdout, "New client secret", "bmV3") || !strings.Contains(stderr, "only this once") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

func TestAgentUpdateSendsOnlyGivenFields(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"PATCH /v1/agents/agt_01": func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if string(b) != `{"owner":"new-team","allowed_scopes":[]}` {
				t.Errorf("patch = %s", b)
			}
			cliReply(200, cliAgent)(w, r)
		},
	})
	if _, _, err := cliRun(t, "agent", "update", "agt_01", "--owner", "new-team", "--scope", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cliRun(t, "agent", "update", "agt_01"); err == nil || !strings.Contains(err.Error(), "nothing to update") {
		t.Errorf("empty update: %v", err)
	}
}

func TestAgentGetJSONIsTheServersBytes(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"GET /v1/agents/agt_01": cliReply(200, strings.TrimSuffix(cliAgent, "}")+`,"new_field":"kept"}`),
	})
	stdout, _, err := cliRun(t, "agent", "get", "agt_01", "--json")
	if err != nil || !strings.Contains(stdout, `"new_field": "kept"`) {
		t.Errorf("%v\n%s", err, stdout)
	}
}
