package vault_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/secrets/secretstest"
	"github.com/lanyardhq/lanyard/internal/secrets/vault"
	"github.com/lanyardhq/lanyard/internal/secrets/vault/vaulttest"
)

func TestMain(m *testing.M) { os.Exit(vaulttest.Main(m)) }

// policyHCL is the least-privilege policy the README documents, for mount "secret"
// and no path prefix.
const policyHCL = `
path "secret/data/lanyard/*"     { capabilities = ["create", "read", "update"] }
path "secret/metadata/lanyard/*" { capabilities = ["delete"] }
`

func newTokenBackend(t *testing.T, srv *vaulttest.Server, mod func(*vault.Config)) *vault.Backend {
	t.Helper()
	cfg := vault.Config{Address: srv.Addr, Token: srv.RootToken}
	if mod != nil {
		mod(&cfg)
	}
	b, err := vault.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := vaulttest.Require(t)
	b := newTokenBackend(t, srv, nil)
	secretstest.Run(t, func(t *testing.T) secrets.Backend { return b })
}

func TestConformanceWithPathPrefixAndOtherMount(t *testing.T) {
	srv := vaulttest.Require(t)
	c := srv.Client()
	if err := c.Sys().MountWithContext(t.Context(), "lanyard-kv", &mountInput); err != nil && !strings.Contains(err.Error(), "already in use") {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write("lanyard-kv/config", map[string]any{"max_versions": 100}); err != nil {
		t.Fatal(err)
	}
	b := newTokenBackend(t, srv, func(c *vault.Config) { c.Mount = "lanyard-kv"; c.PathPrefix = "prod/eu" })
	secretstest.Run(t, func(t *testing.T) secrets.Backend { return b })

	// The prefix is really applied: the secret is visible at <mount>/data/<prefix>/<path>.
	if _, err := b.Put(t.Context(), "lanyard/probe", map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	s, err := c.KVv2("lanyard-kv").Get(t.Context(), "prod/eu/lanyard/probe")
	if err != nil || s.Data["k"] != "v" {
		t.Fatalf("raw read at the prefixed path: %v, %v", s, err)
	}
}

func TestAppRoleLeastPrivilegePolicy(t *testing.T) {
	srv := vaulttest.Require(t)
	ctx := t.Context()
	if err := srv.PutPolicy(ctx, "lanyard", policyHCL); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := srv.EnableAppRole(ctx, "lanyard", "lanyard", "1h", "24h")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(file, []byte(secretID), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := vault.New(ctx, vault.Config{Address: srv.Addr, Auth: vault.AuthAppRole, RoleID: roleID, SecretIDFile: file})
	if err != nil {
		t.Fatalf("AppRole login: %v", err)
	}
	// Everything Lanyard does works under the policy…
	p := "lanyard/agents/finance/approle-" + time.Now().Format("150405.000000")
	v, err := b.Put(ctx, p, map[string]string{"client_secret": "x"})
	if err != nil || v != 1 {
		t.Fatalf("Put = %d, %v", v, err)
	}
	if s, err := b.Get(ctx, p, 1); err != nil || s.Data["client_secret"] != "x" {
		t.Fatalf("Get = %v, %v", s, err)
	}
	if err := b.Destroy(ctx, p); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// …and nothing outside it.
	if _, err := b.Put(ctx, "other/thing", map[string]string{"k": "v"}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Put outside lanyard/ = %v, want permission denied", err)
	}
}

func TestAppRoleWrongSecretIDFailsStartup(t *testing.T) {
	srv := vaulttest.Require(t)
	roleID, _, err := srv.EnableAppRole(t.Context(), "lanyard-wrong", "default", "1h", "1h")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "secret-id")
	os.WriteFile(file, []byte("not-the-secret-id"), 0o600)
	var mu sync.Mutex
	var ops []string
	_, err = vault.New(t.Context(), vault.Config{Address: srv.Addr, Auth: vault.AuthAppRole, RoleID: roleID, SecretIDFile: file,
		OnError: func(op string, err error) { mu.Lock(); ops = append(ops, op); mu.Unlock() }})
	if err == nil {
		t.Fatal("login with a wrong secret id succeeded")
	}
	if !strings.Contains(err.Error(), "approle login") {
		t.Errorf("error %q does not say the AppRole login failed", err)
	}
	if len(ops) == 0 || ops[0] != "login" {
		t.Errorf("OnError ops = %v, want login", ops)
	}
}

// TestAppRoleRenewalAndRelogin uses login tokens that live 3 s and can be renewed up
// to 6 s: Run must renew the token, then log in again when the max TTL is reached, and
// the backend keeps working across both, long after the first token died.
func TestAppRoleRenewalAndRelogin(t *testing.T) {
	srv := vaulttest.Require(t)
	ctx := t.Context()
	if err := srv.PutPolicy(ctx, "lanyard", policyHCL); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := srv.EnableAppRole(ctx, "lanyard-short", "lanyard", "3s", "6s")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "secret-id")
	os.WriteFile(file, []byte(secretID), 0o600)
	b, err := vault.New(ctx, vault.Config{Address: srv.Addr, Auth: vault.AuthAppRole, RoleID: roleID, SecretIDFile: file})
	if err != nil {
		t.Fatal(err)
	}
	first := b.Client().Token()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	defer func() { stop(); <-done }()

	// Well past the first token's max TTL (6 s), the backend still works: it renewed,
	// then logged in again.
	deadline := time.Now().Add(30 * time.Second)
	for b.Client().Token() == first {
		if time.Now().After(deadline) {
			t.Fatal("no new login within 30s of a 6s max TTL")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(7 * time.Second) // the first token is certainly dead now
	// With leases this short, a write can meet a login token at the end of its own
	// 6 s: Vault reports lease durations in whole seconds and the watcher gives up
	// renewing 10-20% of a 3 s lease before the end, so on a loaded machine the next
	// login may land a moment after the token died. (With hour-long leases the margin
	// is minutes.) What must hold is that logging in again keeps the backend working:
	// a write succeeds within one more login cycle, and never would with a dead token.
	var putErr error
	for end := time.Now().Add(6 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, putErr = b.Put(ctx, "lanyard/renewal-probe", map[string]string{"k": "v"}); putErr == nil || time.Now().After(end) {
			break
		}
		t.Logf("Put at a token's end of life: %v", putErr)
	}
	if putErr != nil {
		t.Fatalf("Put after re-login: %v", putErr)
	}
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping after re-login: %v", err)
	}
	// The old token is really expired: this proves the re-login was necessary.
	old := srv.Client()
	old.SetToken(first)
	if _, err := old.Auth().Token().LookupSelf(); err == nil {
		t.Fatal("first login token still valid after its max TTL")
	}
	b.Destroy(ctx, "lanyard/renewal-probe")
}

// TestTokenRenewal: a renewable periodic token created with a 2 s period stays alive
// for much longer only because Run renews it.
func TestTokenRenewal(t *testing.T) {
	srv := vaulttest.Require(t)
	ctx := t.Context()
	c := srv.Client()
	sec, err := c.Auth().Token().CreateWithContext(ctx, &tokenCreate)
	if err != nil {
		t.Fatal(err)
	}
	b := newTokenBackend(t, srv, func(cfg *vault.Config) { cfg.Token = sec.Auth.ClientToken })
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	time.Sleep(7 * time.Second)
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping 7s into a 2s-period token: %v", err)
	}
	stop()
	<-done
	// Without renewal it dies.
	time.Sleep(3 * time.Second)
	if err := b.Ping(ctx); err == nil {
		t.Fatal("token still valid 3s after renewal stopped; the test proves nothing")
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  vault.Config
		want string
	}{
		{"no address", vault.Config{Token: "t"}, "address"},
		{"bad scheme", vault.Config{Address: "vault:8200", Token: "t"}, "http(s) URL"},
		{"no token", vault.Config{Address: "http://127.0.0.1:1"}, "needs a token"},
		{"approle without secret id", vault.Config{Address: "http://127.0.0.1:1", Auth: "approle", RoleID: "r"}, "secret id file"},
		{"kubernetes without role", vault.Config{Address: "http://127.0.0.1:1", Auth: "kubernetes"}, "needs a role"},
		{"unknown auth", vault.Config{Address: "http://127.0.0.1:1", Auth: "ldap"}, "not token, approle or kubernetes"},
		{"skip verify refused", vault.Config{Address: "https://127.0.0.1:1", Token: "t", InsecureSkipVerify: true}, "refused"},
		{"bad prefix", vault.Config{Address: "http://127.0.0.1:1", Token: "t", PathPrefix: "../x"}, "invalid path"},
		{"cert without key", vault.Config{Address: "https://127.0.0.1:1", Token: "t", ClientCert: "c.pem"}, "together"},
		{"missing CA file", vault.Config{Address: "https://127.0.0.1:1", Token: "t", CACert: "/nonexistent/ca.pem"}, "TLS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := vault.New(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestUnreachableVaultFailsStartupAndPing(t *testing.T) {
	srv := vaulttest.Require(t)
	p, err := vaulttest.NewProxy(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var mu sync.Mutex
	var ops []string
	b, err := vault.New(t.Context(), vault.Config{Address: p.Addr, Token: srv.RootToken, MaxRetries: -1, Timeout: 2 * time.Second,
		OnError: func(op string, err error) { mu.Lock(); ops = append(ops, op); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	p.Down()
	if err := b.Ping(t.Context()); err == nil {
		t.Fatal("Ping succeeded with Vault down")
	}
	if _, err := b.Put(t.Context(), "lanyard/x", map[string]string{"k": "v"}); err == nil || errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Put with Vault down = %v", err)
	}
	if b.LastError() == nil {
		t.Error("LastError is nil after failures")
	}
	mu.Lock()
	if len(ops) < 2 {
		t.Errorf("OnError saw %v, want ping and put", ops)
	}
	mu.Unlock()
	if err := p.Up(); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(t.Context()); err != nil {
		t.Fatalf("Ping after Vault came back: %v", err)
	}
	if b.LastError() != nil {
		t.Error("LastError not cleared by a success")
	}
	if _, err := vault.New(t.Context(), vault.Config{Address: "http://127.0.0.1:1", Token: "t", MaxRetries: -1}); err == nil {
		t.Fatal("New succeeded against a closed port")
	}
}

var (
	mountInput  = api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}
	tokenCreate = api.TokenCreateRequest{Period: "2s", Policies: []string{"default"}, NoParent: true}
)
