// Package vaulttest starts a real Vault dev server for tests: one per test package,
// from TestMain, stopped when the package's tests end.
//
// The binary is $LANYARD_TEST_VAULT_BIN (make test sets it to the cached build that
// `make vault` produces), else $HOME/.cache/lanyard/vault-v1.19.5, else `vault` on
// PATH. When there is none, tests that call Require are skipped, or fail when
// LANYARD_REQUIRE_SERVICES=1.
//
// The server runs in memory: everything written is gone when it stops. Its KV v2
// mount "secret" is configured to keep 100 versions per secret (the conformance
// suite reads back more than the default 10).
package vaulttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Environment variables read here.
const (
	BinEnv             = "LANYARD_TEST_VAULT_BIN"
	RequireServicesEnv = "LANYARD_REQUIRE_SERVICES"
	// Version is the Vault release test/tools/vault pins.
	Version = "v1.19.5"
)

// ErrNoVault reports that no Vault binary was found.
var ErrNoVault = errors.New("vaulttest: no vault binary (run make vault, or set " + BinEnv + ")")

// Server is a running Vault dev server.
type Server struct {
	// Addr is the server's URL, e.g. http://127.0.0.1:41234.
	Addr string
	// RootToken is the dev server's root token.
	RootToken string
	// CACert is the PEM file of the CA that signed the server's certificate, for a
	// server started with StartTLS (its certificate names 127.0.0.1 and localhost).
	CACert string

	cmd    *exec.Cmd
	done   chan struct{}
	logs   *syncBuffer
	home   string
	tlsDir string
}

// Binary returns the Vault binary to run, or ErrNoVault.
func Binary() (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "lanyard", "vault-"+Version)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("vault"); err == nil {
		return p, nil
	}
	return "", ErrNoVault
}

// Start starts a dev server on a free 127.0.0.1 port and waits until it is unsealed
// and its KV v2 mount answers. Call Stop when done.
func Start() (*Server, error) { return start(false) }

// StartTLS is Start with HTTPS (vault server -dev-tls): the server's certificate is
// signed by a generated CA whose PEM file is CACert.
func StartTLS() (*Server, error) { return start(true) }

func start(withTLS bool) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr:      fmt.Sprintf("http://127.0.0.1:%d", port),
		RootToken: "lanyard-test-root-" + randomSuffix(),
		done:      make(chan struct{}),
		logs:      &syncBuffer{},
	}
	args := []string{"server", "-dev", "-dev-root-token-id=" + s.RootToken, fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port)}
	if withTLS {
		dir, err := os.MkdirTemp("", "vaulttest-tls-")
		if err != nil {
			return nil, err
		}
		s.tlsDir = dir
		s.Addr = fmt.Sprintf("https://127.0.0.1:%d", port)
		s.CACert = filepath.Join(dir, "vault-ca.pem")
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+dir)
	}
	s.cmd = exec.Command(bin, args...)
	// The dev server must not pick up a developer's VAULT_* settings.
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	// HOME: the dev server writes its root token to ~/.vault-token; keep it out of the
	// developer's home.
	home, err := os.MkdirTemp("", "vaulttest-home-")
	if err != nil {
		return nil, err
	}
	s.home = home
	s.cmd.Env = append(env, "VAULT_DISABLE_MLOCK=true", "HOME="+home)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("vaulttest: start %s: %w", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, fmt.Errorf("vaulttest: %w; server output:\n%s", err, s.logs.String())
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	for {
		select {
		case <-s.done:
			return errors.New("vault exited")
		default:
		}
		c, err := s.newClient() // with TLS, fails until the CA file is complete
		if err == nil {
			_, err = c.Logical().WriteWithContext(ctx, "secret/config", map[string]any{"max_versions": 100})
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vault not ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Client returns a new client authenticated with the root token.
func (s *Server) Client() *api.Client {
	c, err := s.newClient()
	if err != nil {
		panic(err) // Start checked that a client can be built
	}
	return c
}

func (s *Server) newClient() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	if s.CACert != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: s.CACert}); err != nil {
			return nil, err
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearNamespace()
	c.SetToken(s.RootToken)
	return c, nil
}

// Stop stops the server and waits for it to exit.
func (s *Server) Stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	if s.home != "" {
		_ = os.RemoveAll(s.home)
	}
	if s.tlsDir != "" {
		_ = os.RemoveAll(s.tlsDir)
	}
}

// Logs returns what the server printed so far.
func (s *Server) Logs() string { return s.logs.String() }

var (
	mu       sync.Mutex
	shared   *Server
	startErr error
)

// Main runs a test package with a shared dev server: use it as
//
//	func TestMain(m *testing.M) { os.Exit(vaulttest.Main(m)) }
//
// The server starts only if a binary exists; Require reports its absence per test.
func Main(m *testing.M) int {
	s, err := Start()
	mu.Lock()
	shared, startErr = s, err
	mu.Unlock()
	code := m.Run()
	s.Stop()
	return code
}

// Require returns the package's shared server (started by Main). Without one the
// test is skipped, or fails when LANYARD_REQUIRE_SERVICES=1.
func Require(t testing.TB) *Server {
	t.Helper()
	mu.Lock()
	s, err := shared, startErr
	mu.Unlock()
	if s != nil {
		return s
	}
	if err == nil {
		err = errors.New("vaulttest.Main did not run (add it to TestMain)")
	}
	if os.Getenv(RequireServicesEnv) == "1" {
		t.Fatalf("Vault is required (%s=1): %v", RequireServicesEnv, err)
	}
	t.Skipf("Vault not available: %v", err)
	return nil
}

// EnableAppRole mounts AppRole auth (once), creates role with policy, and returns
// its role id and a fresh secret id. tokenTTL and tokenMaxTTL set the login token's
// lifetime (Vault syntax, e.g. "10s").
func (s *Server) EnableAppRole(ctx context.Context, role, policy, tokenTTL, tokenMaxTTL string) (roleID, secretID string, err error) {
	c := s.Client()
	auths, err := c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return "", "", err
	}
	if _, ok := auths["approle/"]; !ok {
		if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &api.EnableAuthOptions{Type: "approle"}); err != nil && !strings.Contains(err.Error(), "path is already in use") {
			return "", "", err
		}
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/approle/role/"+role, map[string]any{
		"token_policies": policy, "token_ttl": tokenTTL, "token_max_ttl": tokenMaxTTL,
	}); err != nil {
		return "", "", err
	}
	r, err := c.Logical().ReadWithContext(ctx, "auth/approle/role/"+role+"/role-id")
	if err != nil {
		return "", "", err
	}
	w, err := c.Logical().WriteWithContext(ctx, "auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		return "", "", err
	}
	return r.Data["role_id"].(string), w.Data["secret_id"].(string), nil
}

// PutPolicy writes an ACL policy.
func (s *Server) PutPolicy(ctx context.Context, name, hcl string) error {
	return s.Client().Sys().PutPolicyWithContext(ctx, name, hcl)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomSuffix() string {
	return fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
}

// syncBuffer collects the server's output, bounded so a chatty server cannot grow it
// without limit.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 1<<20 {
		b.buf = b.buf[len(b.buf)-(1<<19):]
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

var _ io.Writer = (*syncBuffer)(nil)
