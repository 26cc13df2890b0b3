package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// cliFakeTokenServer serves discovery and a token endpoint. check sees each token request.
func cliFakeTokenServer(t *testing.T, check func(r *http.Request, issuer string)) {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			cliReply(200, `{"issuer":"`+srv.URL+`","token_endpoint":"`+srv.URL+`/oauth2/token","jwks_uri":"`+srv.URL+`/oauth2/jwks"}`)(w, r)
		case "/oauth2/token":
			if err := r.ParseForm(); err != nil {
				t.Fatal(err)
			}
			if r.PostForm.Get("scope") == "forbidden" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(400)
				io.WriteString(w, `{"error":"invalid_scope","error_description":"scope forbidden is not allowed for this agent"}`)
				return
			}
			check(r, srv.URL)
			cliReply(200, `{"access_token":"eyJ.test.token","token_type":"Bearer","expires_in":300,"scope":"invoices:read"}`)(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Setenv(envURL, srv.URL)
	t.Setenv(envClientSecret, "")
}

func TestTokenPrivateKeyJWT(t *testing.T) {
	out := filepath.Join(t.TempDir(), "agent")
	if _, _, err := cliRun(t, "keygen", "--out", out); err != nil {
		t.Fatal(err)
	}
	set, err := readJWKS(out + ".jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	cliFakeTokenServer(t, func(r *http.Request, issuer string) {
		f := r.PostForm
		if f.Get("client_id") != "agt_01" || f.Get("scope") != "invoices:read" || f.Get("resource") != "https://erp.example.com" {
			t.Errorf("form = %v", f)
		}
		tok, err := jwt.ParseSigned(f.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var c jwt.Claims
		if err := tok.Claims(set.Keys[0].Key, &c); err != nil {
			t.Fatalf("assertion does not verify with the registered key: %v", err)
		}
		if c.Issuer != "agt_01" || c.Subject != "agt_01" || c.Audience[0] != issuer || tok.Headers[0].KeyID != set.Keys[0].KeyID {
			t.Errorf("claims %+v kid %s", c, tok.Headers[0].KeyID)
		}
	})
	stdout, stderr, err := cliRun(t, "token", "--client-id", "agt_01", "--key", out+".jwk",
		"--scope", "invoices:read", "--resource", "https://erp.example.com")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "access_token:  eyJ.test.token") || !strings.Contains(stdout, "expires_in:    300") {
		t.Errorf("output:\n%s", stdout)
	}
	if stderr != "" {
		t.Errorf("stderr: %s", stderr)
	}

	stdout, _, err = cliRun(t, "token", "--client-id", "agt_01", "--key", out+".jwk", "--json",
		"--scope", "invoices:read", "--resource", "https://erp.example.com")
	if err != nil || !strings.HasPrefix(stdout, "{") || !strings.Contains(stdout, `"access_token": "eyJ.test.token"`) {
		t.Errorf("--json: %v\n%s", err, stdout)
	}

	_, _, err = cliRun(t, "token", "--client-id", "agt_01", "--key", out+".jwk", "--scope", "forbidden")
	if err == nil || !strings.Contains(err.Error(), "invalid_scope: scope forbidden is not allowed") {
		t.Errorf("refusal: %v", err)
	}
}

func TestTokenClientSecret(t *testing.T) {
	var wantSecret string
	cliFakeTokenServer(t, func(r *http.Request, issuer string) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != "agt_01" || secret != wantSecret || r.PostForm.Has("client_assertion") {
			t.Errorf("basic auth %q %q %v", id, secret, ok)
		}
	})
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("from-file\n"), 0o600)
	wantSecret = "from-file"
	if _, _, err := cliRun(t, "token", "--client-id", "agt_01", "--client-secret-file", secretFile); err != nil {
		t.Fatal(err)
	}
	wantSecret = "from-env"
	t.Setenv(envClientSecret, "from-env")
	if _, _, err := cliRun(t, "token", "--client-id", "agt_01"); err != nil {
		t.Fatal(err)
	}
}

func TestTokenCredentialErrors(t *testing.T) {
	cliFakeTokenServer(t, func(r *http.Request, issuer string) { t.Error("request sent") })
	dir := t.TempDir()
	out := filepath.Join(dir, "agent")
	if _, _, err := cliRun(t, "keygen", "--out", out); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no credential", []string{"--client-id", "a"}, "no client credential"},
		{"public set as key", []string{"--client-id", "a", "--key", out + ".jwks.json"}, "is a JWK set"},
		{"missing key file", []string{"--client-id", "a", "--key", filepath.Join(dir, "nope.jwk")}, "no such file"},
		{"empty secret file", []string{"--client-id", "a", "--client-secret-file", filepath.Join(dir, "empty")}, "is empty"},
		{"no client id", []string{"--key", out + ".jwk"}, "client-id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := cliRun(t, append([]string{"token"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	// The secret has no flag of its own.
	if _, _, err := cliRun(t, "token", "--client-id", "a", "--client-secret", "x"); err == nil {
		t.Error("--client-secret flag exists; secrets must not be passed on the command line")
	}
}

func TestTokenWarnsOnReadableKey(t *testing.T) {
	out := filepath.Join(t.TempDir(), "agent")
	if _, _, err := cliRun(t, "keygen", "--out", out); err != nil {
		t.Fatal(err)
	}
	os.Chmod(out+".jwk", 0o644)
	cliFakeTokenServer(t, func(r *http.Request, issuer string) {})
	_, stderr, err := cliRun(t, "token", "--client-id", "a", "--key", out+".jwk")
	if err != nil || !strings.Contains(stderr, "readable by other users") {
		t.Errorf("%v, stderr %q", err, stderr)
	}
}
