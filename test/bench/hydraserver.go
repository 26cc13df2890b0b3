package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// hydraConfig is the Ory Hydra configuration of the comparison (a YAML file; the DSN
// comes from the environment). What each setting is for:
//
//   - no --dev flag: Hydra's production mode. It then requires an https issuer; the
//     issuer is https://127.0.0.1:PORT/ while Hydra listens on plain HTTP, exactly as
//     behind a TLS-terminating proxy (Hydra logs "HTTPS is disabled" once). Lanyard is
//     measured over plain HTTP on loopback too.
//   - strategies.access_token: jwt — JWT access tokens, as Lanyard issues (Hydra's
//     documentation for client credentials with self-contained tokens); each client is
//     also registered with access_token_strategy jwt.
//   - log.level: warn — no per-request logging (Lanyard runs at warn as well).
//   - oauth2.hashers: Hydra's defaults, written out (PBKDF2, 25,000 iterations) — the
//     client secret hash it checks on every client_secret_basic request.
//   - The access token signing key: an ES256 key added to the hydra.jwt.access-token
//     set through the admin API after start (POST /admin/keys/hydra.jwt.access-token);
//     Hydra signs with the newest key of the set, so it does not use its default RSA
//     key. The generator checks that the issued token's alg is ES256.
//   - PostgreSQL: a fresh database per run, DSN with max_conns=64 and
//     max_idle_conns=64 (a pool sized for 64 clients). SQLite: a fresh file with
//     _fk=true.
const hydraConfig = `serve:
  public:
    host: 127.0.0.1
    port: %d
  admin:
    host: 127.0.0.1
    port: %d
urls:
  self:
    issuer: https://127.0.0.1:%d/
strategies:
  access_token: jwt
oauth2:
  hashers:
    algorithm: pbkdf2
    pbkdf2:
      iterations: 25000
log:
  level: warn
  format: json
  leak_sensitive_values: false
secrets:
  system:
    - %s
`

// hydraServer is an Ory Hydra process the comparison started.
type hydraServer struct {
	cmd       *exec.Cmd
	publicURL string
	adminURL  string
	dir       string
	logPath   string
	dsn       string
	config    string // the configuration file, with the system secret redacted
	dropDB    func() error
	keep      bool
	exited    chan struct{}
	waitErr   error
}

// startHydra migrates a fresh store and starts `hydra serve all` on two free loopback
// ports. store is "sqlite" or "postgres" (then pgURL names the server; the run gets a
// database of its own, dropped on stop).
func startHydra(ctx context.Context, bin, store, pgURL string, keep bool, logf func(string, ...any)) (*hydraServer, error) {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("hydra binary: %w (make bench-compare builds it)", err)
	}
	pub, err := freePort()
	if err != nil {
		return nil, err
	}
	adm, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hydra-bench-")
	if err != nil {
		return nil, err
	}
	h := &hydraServer{
		publicURL: fmt.Sprintf("http://127.0.0.1:%d", pub),
		adminURL:  fmt.Sprintf("http://127.0.0.1:%d", adm),
		dir:       dir,
		logPath:   filepath.Join(dir, "hydra.log"),
		keep:      keep,
		exited:    make(chan struct{}),
	}
	fail := func(err error) (*hydraServer, error) {
		h.cleanup(logf)
		return nil, err
	}
	switch store {
	case "sqlite":
		h.dsn = "sqlite://" + filepath.Join(dir, "hydra.sqlite") + "?_fk=true&mode=rwc"
	case "postgres":
		if h.dsn, h.dropDB, err = freshDatabase(pgURL, url.Values{"max_conns": {"64"}, "max_idle_conns": {"64"}}); err != nil {
			return fail(err)
		}
	default:
		return fail(fmt.Errorf("hydra store %q: want sqlite or postgres", store))
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := fmt.Sprintf(hydraConfig, pub, adm, pub, hex.EncodeToString(secret))
	h.config = strings.Replace(cfg, hex.EncodeToString(secret), "<32 random bytes, hex, new each run>", 1)
	cfgPath := filepath.Join(dir, "hydra.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return fail(err)
	}
	logFile, err := os.Create(h.logPath)
	if err != nil {
		return fail(err)
	}
	defer logFile.Close()

	// Hydra's environment: ours without DSN or any Hydra setting, plus the DSN.
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "DSN" || strings.HasPrefix(k, "SERVE_") || strings.HasPrefix(k, "URLS_") || strings.HasPrefix(k, "LOG_") ||
			strings.HasPrefix(k, "SECRETS_") || strings.HasPrefix(k, "STRATEGIES_") || strings.HasPrefix(k, "OAUTH2_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "DSN="+h.dsn)

	mig := exec.CommandContext(ctx, bin, "migrate", "sql", "up", "-e", "--yes", "--config", cfgPath)
	mig.Env, mig.Dir, mig.Stdout, mig.Stderr = env, dir, logFile, logFile
	t0 := time.Now()
	if err := mig.Run(); err != nil {
		return fail(fmt.Errorf("hydra migrate: %w; log:\n%s", err, tail(h.logPath)))
	}
	logf("hydra: migrated a fresh %s store in %s", store, time.Since(t0).Round(time.Millisecond))

	h.cmd = exec.Command(bin, "serve", "all", "--config", cfgPath)
	h.cmd.Env, h.cmd.Dir, h.cmd.Stdout, h.cmd.Stderr = env, dir, logFile, logFile
	setParentDeathSignal(h.cmd)
	if err := h.cmd.Start(); err != nil {
		return fail(fmt.Errorf("start hydra: %w", err))
	}
	go func() {
		h.waitErr = h.cmd.Wait()
		close(h.exited)
	}()
	logf("hydra: started %s serve all (pid %d), public %s, admin %s", bin, h.cmd.Process.Pid, h.publicURL, h.adminURL)
	if err := waitHTTP(ctx, h.adminURL+"/health/ready", 60*time.Second, h.exited); err != nil {
		h.stop(logf)
		return nil, fmt.Errorf("hydra: %w; log:\n%s", err, tail(h.logPath))
	}
	// The ES256 access token key: added to the set, newest first, so Hydra signs with it.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	if err := hydraJSON(ctx, hc, http.MethodPost, h.adminURL+"/admin/keys/hydra.jwt.access-token",
		map[string]string{"alg": "ES256", "use": "sig", "kid": "bench-es256"}, http.StatusCreated, nil); err != nil {
		h.stop(logf)
		return nil, fmt.Errorf("hydra: add the ES256 access token key: %w", err)
	}
	// Hydra creates missing key sets (the RSA ID token key) on first use, which takes
	// seconds; the public JWKS request makes it happen now rather than in a run.
	hc.Timeout = 120 * time.Second
	if err := hydraJSON(ctx, hc, http.MethodGet, h.publicURL+"/.well-known/jwks.json", nil, http.StatusOK, nil); err != nil {
		h.stop(logf)
		return nil, fmt.Errorf("hydra: JWKS: %w", err)
	}
	return h, nil
}

func (h *hydraServer) pid() int { return h.cmd.Process.Pid }

// stop sends SIGTERM, waits up to 15 s, kills, then removes the store.
func (h *hydraServer) stop(logf func(string, ...any)) {
	if h.cmd != nil && h.cmd.Process != nil {
		select {
		case <-h.exited:
		default:
			h.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-h.exited:
			case <-time.After(15 * time.Second):
				logf("hydra did not stop within 15s of SIGTERM; killing it")
				h.cmd.Process.Kill()
				<-h.exited
			}
		}
	}
	h.cleanup(logf)
}

func (h *hydraServer) cleanup(logf func(string, ...any)) {
	if h.keep {
		logf("kept %s (hydra log: %s)", h.dir, h.logPath)
		return
	}
	if h.dropDB != nil {
		if err := h.dropDB(); err != nil {
			logf("drop hydra database: %v", err)
		}
	}
	os.RemoveAll(h.dir)
}

// freshDatabase creates a new database on the PostgreSQL server of dsn and returns a
// DSN for it (with extra query parameters) and a function that drops it.
func freshDatabase(dsn string, extra url.Values) (string, func() error, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", nil, fmt.Errorf("database URL: %w", err)
	}
	if err := requireLoopback("http://" + u.Host); err != nil {
		return "", nil, fmt.Errorf("database URL: %w", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "hydra_bench_" + hex.EncodeToString(b)
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := exec("CREATE DATABASE " + ident); err != nil {
		return "", nil, fmt.Errorf("create hydra database: %w", err)
	}
	v := u.Query()
	for k, vs := range extra {
		v[k] = vs
	}
	u.RawQuery = v.Encode()
	u.Path = "/" + name
	return u.String(), func() error { return exec("DROP DATABASE " + ident + " WITH (FORCE)") }, nil
}

// waitHTTP polls u until it answers 200, exited closes, or timeout passes.
func waitHTTP(ctx context.Context, u string, timeout time.Duration, exited <-chan struct{}) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		resp, err := hc.Get(u)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (last: %v)", u, timeout, last)
		}
		select {
		case <-exited:
			return errors.New("the process exited before it was ready")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
