package vault_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/secrets/vault"
	"github.com/lanyardhq/lanyard/internal/secrets/vault/vaulttest"
)

// TestTLS runs a second dev server with HTTPS (its own generated CA) and checks the TLS
// options: the CA file makes it trusted, the system roots alone do not, a wrong server
// name fails, and skipping verification needs the development switch.
func TestTLS(t *testing.T) {
	vaulttest.Require(t) // the binary exists (or the test skips / fails as configured)
	srv, err := vaulttest.StartTLS()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx := t.Context()
	base := vault.Config{Address: srv.Addr, Token: srv.RootToken, MaxRetries: -1, Timeout: 5 * time.Second}

	withCA := base
	withCA.CACert = srv.CACert
	b, err := vault.New(ctx, withCA)
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if _, err := b.Put(ctx, "lanyard/tls-probe", map[string]string{"k": "v"}); err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}

	withName := withCA
	withName.TLSServerName = "localhost" // also in the dev certificate
	if _, err := vault.New(ctx, withName); err != nil {
		t.Fatalf("with server name localhost: %v", err)
	}
	wrongName := withCA
	wrongName.TLSServerName = "vault.example.com"
	if _, err := vault.New(ctx, wrongName); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("wrong server name = %v, want a certificate error", err)
	}
	if _, err := vault.New(ctx, base); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA = %v, want a certificate error", err)
	}
	skip := base
	skip.InsecureSkipVerify = true
	if _, err := vault.New(ctx, skip); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("skip-verify without the switch = %v", err)
	}
	skip.AllowInsecure = true
	if _, err := vault.New(ctx, skip); err != nil {
		t.Fatalf("skip-verify with the development switch: %v", err)
	}
	// A client certificate pair that does not load stops start-up. (Mutual TLS itself
	// is not exercised: the dev server cannot be told to require client certificates.)
	mtls := withCA
	mtls.ClientCert, mtls.ClientKey = srv.CACert, srv.CACert
	if _, err := vault.New(ctx, mtls); err == nil {
		t.Fatal("a client certificate without its key was accepted")
	}
}

// TestNamespaceHeader checks that the Vault Enterprise namespace is sent on every
// request (the open-source dev server ignores namespaces, so a recording server stands
// in for it) and that VAULT_NAMESPACE in the environment does not leak in.
func TestNamespaceHeader(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path+" ns="+r.Header.Get("X-Vault-Namespace"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/auth/token/lookup-self":
			w.Write([]byte(`{"data":{"ttl":0,"renewable":false,"policies":["root"]}}`))
		case "/v1/secret/data/lanyard/ns-probe":
			w.Write([]byte(`{"data":{"version":1,"created_time":"2026-01-01T00:00:00Z","deletion_time":"","destroyed":false}}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer fake.Close()
	t.Setenv("VAULT_NAMESPACE", "from-the-environment")
	b, err := vault.New(t.Context(), vault.Config{Address: fake.URL, Token: "t", Namespace: "team-a/prod", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := b.Put(t.Context(), "lanyard/ns-probe", map[string]string{"k": "v"}); err != nil || v != 1 {
		t.Fatalf("Put = %d, %v", v, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 {
		t.Fatalf("requests: %v", seen)
	}
	for _, s := range seen {
		if !strings.HasSuffix(s, " ns=team-a/prod") {
			t.Errorf("request %s without the configured namespace", s)
		}
	}
}
