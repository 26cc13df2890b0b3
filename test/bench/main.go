// Command bench is Lanyard's load generator for token issuance: client_credentials with
// private_key_jwt (ES256), the product's headline flow.
//
// By default it starts `lanyard serve` itself on a random 127.0.0.1 port with a fresh
// data directory and a random admin token, registers an agent through the /v1 API,
// pre-signs every client assertion the run can use (so the generator's own crypto is not
// on the measured path), then drives the token endpoint with -c concurrent clients for
// -warmup plus -d, and reports tokens/s, latency percentiles, errors (with the first
// few error bodies), and the server's CPU time per 1,000 tokens and memory.
//
// With -url it targets an already running server instead (then -admin-token is
// required, and -server-pid enables the CPU and memory figures).
//
// Safety: the generator only ever sends traffic to a loopback address (127.0.0.0/8,
// ::1, localhost) and refuses any other -url or discovered token endpoint. Every run is
// bounded by -warmup + -d and stops by itself; a server it started is stopped on exit
// (and killed by the kernel if the generator dies, on Linux).
//
// Usage:
//
//	go run ./test/bench -bin bin/lanyard -c 64 -d 20s -warmup 3s
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/client"
)

// assertionLifetime is the lifetime of each pre-signed assertion: long enough to cover
// signing plus the longest allowed run, and within the server's 5-minute maximum.
const assertionLifetime = 4 * time.Minute

// maxRun bounds -warmup + -d so that no pre-signed assertion expires mid-run (signing
// takes some seconds too).
const maxRun = 3 * time.Minute

type options struct {
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	bin         string
	url         string
	adminToken  string
	serverPID   int
	databaseURL string
	serverEnv   multiFlag
	rate        float64
	scope       string
	timeout     time.Duration
	jsonOut     bool
	keep        bool
	maxErrors   int
	// mode is "token" (issuance) or "attest" (POST /v1/attestations).
	mode string
	// attested registers the agent with a reference measurement and attests it once
	// before the run, so that every token request passes the attestation gate.
	attested bool
	// auth is the client authentication of the token requests: private_key_jwt or
	// client_secret_basic.
	auth string
	// hydraAdmin, with url, makes the target an Ory Hydra server: the client is
	// registered through this admin API URL instead of Lanyard's /v1.
	hydraAdmin string
	// clientIDsFile and keyFile make token requests come from existing agents (one
	// client_id a line, all registered with the public half of the private JWK in
	// keyFile) instead of one registered for the run: bench scale uses them to spread
	// the load over many agents.
	clientIDsFile string
	keyFile       string

	// Not flags: bench scale restarts one server on the same data dir and schema.
	// dataDir, when set, is used (and kept) instead of a fresh temp dir; with
	// exactDatabaseURL the database URL is used as given, not with a fresh schema.
	dataDir          string
	exactDatabaseURL bool
}

// Client authentication methods the generator can use.
const (
	authPrivateKeyJWT     = "private_key_jwt"
	authClientSecretBasic = "client_secret_basic"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "compare" || os.Args[1] == "scale") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		var err error
		if os.Args[1] == "compare" {
			err = compareMain(ctx, os.Args[2:])
		} else {
			err = scaleMain(ctx, os.Args[2:])
		}
		stop()
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.concurrency, "c", 64, "concurrent clients")
	flag.DurationVar(&o.duration, "d", 20*time.Second, "measured duration")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up before measuring (caches, connections)")
	flag.StringVar(&o.bin, "bin", "bin/lanyard", "lanyard binary to start (ignored with -url)")
	flag.StringVar(&o.url, "url", "", "target an already running server at this loopback URL instead of starting one")
	flag.StringVar(&o.adminToken, "admin-token", "", "admin token of the server given by -url (or env LANYARD_ADMIN_TOKEN)")
	flag.IntVar(&o.serverPID, "server-pid", 0, "with -url: the server's process id, for CPU and memory figures")
	flag.StringVar(&o.databaseURL, "database-url", "", "LANYARD_DATABASE_URL for the started server (default: SQLite in the temp data dir)")
	flag.Var(&o.serverEnv, "server-env", "extra KEY=VALUE for the started server's environment (repeatable)")
	flag.Float64Var(&o.rate, "rate", 12000, "assertions to pre-sign per second of run; the run ends early if they run out")
	flag.StringVar(&o.scope, "scope", "bench:read", "scope the agent is allowed and requests (empty: none)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp data dir and server log")
	flag.IntVar(&o.maxErrors, "max-errors", 0, "exit non-zero when the measured window has more errors than this")
	flag.StringVar(&o.mode, "mode", "token", "token: load the token endpoint; introspect: load /oauth2/introspect (tokens issued before the clock starts, a client_secret resource server calls); attest: load POST /v1/attestations (challenges fetched before the clock starts)")
	flag.BoolVar(&o.attested, "attested", false, "register the agent with a reference measurement and attest it first, so every token passes the attestation gate")
	flag.StringVar(&o.auth, "auth", authPrivateKeyJWT, "client authentication: private_key_jwt (a pre-signed ES256 assertion per request) or client_secret_basic")
	flag.StringVar(&o.hydraAdmin, "hydra-admin", "", "with -url: the target is Ory Hydra, and this is its admin API URL (loopback), where the client is registered")
	flag.StringVar(&o.clientIDsFile, "client-ids", "", "file of client_ids (one a line) of existing private_key_jwt agents to spread requests over, instead of registering one (needs -key)")
	flag.StringVar(&o.keyFile, "key", "", "with -client-ids: the private JWK (JSON) those agents authenticate with")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o *options) validate() error {
	var errs []error
	if o.concurrency < 1 || o.concurrency > 4096 {
		errs = append(errs, fmt.Errorf("-c %d: want 1..4096", o.concurrency))
	}
	if o.duration <= 0 {
		errs = append(errs, fmt.Errorf("-d %s: must be positive", o.duration))
	}
	if o.warmup < 0 {
		errs = append(errs, fmt.Errorf("-warmup %s: must not be negative", o.warmup))
	}
	if o.warmup+o.duration > maxRun {
		errs = append(errs, fmt.Errorf("-warmup + -d = %s: at most %s, because pre-signed assertions live %s (the server allows at most 5m)",
			o.warmup+o.duration, maxRun, assertionLifetime))
	}
	if (o.clientIDsFile == "") != (o.keyFile == "") {
		errs = append(errs, errors.New("-client-ids and -key go together"))
	}
	if o.clientIDsFile != "" && (o.auth != authPrivateKeyJWT || o.attested || o.hydraAdmin != "") {
		errs = append(errs, errors.New("-client-ids: only with -auth private_key_jwt, without -attested, on Lanyard"))
	}
	switch o.mode {
	case "token", "introspect":
	case "attest":
		// Challenges live 60 s and are all fetched before the clock starts.
		if o.warmup+o.duration > 45*time.Second {
			errs = append(errs, fmt.Errorf("-mode attest: -warmup + -d = %s: at most 45s, because challenges expire 60s after they are fetched", o.warmup+o.duration))
		}
	default:
		errs = append(errs, fmt.Errorf("-mode %q: want token, introspect or attest", o.mode))
	}
	switch o.auth {
	case authPrivateKeyJWT, authClientSecretBasic:
	default:
		errs = append(errs, fmt.Errorf("-auth %q: want %s or %s", o.auth, authPrivateKeyJWT, authClientSecretBasic))
	}
	if o.hydraAdmin != "" {
		if err := requireLoopback(o.hydraAdmin); err != nil {
			errs = append(errs, fmt.Errorf("-hydra-admin: %w", err))
		}
		if o.url == "" {
			errs = append(errs, errors.New("-hydra-admin needs -url (Hydra's public URL)"))
		}
		if o.mode != "token" || o.attested {
			errs = append(errs, errors.New("-hydra-admin: only -mode token without -attested (Hydra has no attestation)"))
		}
	}
	if o.rate < 1 {
		errs = append(errs, fmt.Errorf("-rate %g: must be at least 1", o.rate))
	}
	if o.url != "" {
		if err := requireLoopback(o.url); err != nil {
			errs = append(errs, fmt.Errorf("-url: %w", err))
		}
		if o.adminToken == "" {
			o.adminToken = os.Getenv("LANYARD_ADMIN_TOKEN")
		}
		if o.adminToken == "" && o.hydraAdmin == "" {
			errs = append(errs, errors.New("-url needs -admin-token (or LANYARD_ADMIN_TOKEN) to register the bench agent"))
		}
	}
	return errors.Join(errs...)
}

// requireLoopback refuses any URL whose host is not a loopback address: the generator
// must never send load anywhere but this machine.
func requireLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: scheme must be http or https", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s: host %q is not a loopback address; the load generator only targets 127.0.0.1/::1", raw, host)
}

func run(ctx context.Context, o options) error {
	if err := o.validate(); err != nil {
		return err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	}

	var srv *server
	baseURL, adminToken, pid := o.url, o.adminToken, o.serverPID
	if baseURL == "" {
		var err error
		srv, err = startServer(ctx, o, logf)
		if err != nil {
			return err
		}
		defer srv.stop(logf)
		baseURL, adminToken, pid = srv.url, srv.adminToken, srv.cmd.Process.Pid
	}

	httpClient := &http.Client{Transport: newTransport(o.concurrency), Timeout: o.timeout}
	var (
		c   *client.Client
		reg *registration
		err error
	)
	if o.hydraAdmin != "" {
		reg, err = registerHydraClient(ctx, httpClient, o)
	} else {
		c = client.New(baseURL, adminToken, httpClient)
		reg, err = registerLanyardAgent(ctx, c, o)
	}
	if err != nil {
		return err
	}
	logf("registered %s client %s (%s); token endpoint %s", reg.server, reg.clientID, o.auth, reg.tokenURL)

	tokenTarget := target{url: reg.tokenURL, contentType: "application/x-www-form-urlencoded", okStatus: http.StatusOK, header: reg.authHeader()}
	// One real request first, so a misconfiguration shows as one clear error rather
	// than as a run full of failures after seconds of signing.
	if err := checkToken(tokenTarget, reg, o.scope, o.timeout); err != nil {
		return fmt.Errorf("sanity token request to %s: %w", reg.server, err)
	}

	n := int(math.Ceil(o.rate*(o.warmup+o.duration).Seconds())) + o.concurrency
	t0 := time.Now()
	tgt := tokenTarget
	var bodies [][]byte
	switch o.mode {
	case "introspect":
		tgt, bodies, err = prepareIntrospection(ctx, c, tokenTarget, reg, o.scope, n, o.timeout)
	case "attest":
		tgt = target{url: strings.TrimSuffix(baseURL, "/") + "/v1/attestations", contentType: "application/json",
			okStatus: http.StatusCreated, okMarker: []byte(`"status":"affirming"`)}
		bodies, err = prepareAttestations(ctx, c, reg.agentAuth(), tgt.url, n)
	default:
		bodies, err = tokenBodies(ctx, reg, o.scope, n)
	}
	if err != nil {
		return err
	}
	logf("prepared %d requests in %s", n, time.Since(t0).Round(time.Millisecond))

	logf("running %d clients: %s warm-up, %s measured", o.concurrency, o.warmup, o.duration)
	res := drive(ctx, tgt, bodies, o, pid)
	res.Mode, res.Attested = o.mode, o.attested || o.mode == "attest"
	res.Target, res.Auth = reg.server, o.auth
	res.Server = baseURL
	res.StartedServer = srv != nil
	if srv != nil {
		res.Database = srv.database
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	if o.jsonOut {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Println(string(b))
	} else {
		res.print(os.Stdout)
	}
	if res.OK == 0 {
		return errors.New("no token was issued in the measured window")
	}
	if res.Errors > int64(o.maxErrors) {
		return fmt.Errorf("%d errors in the measured window (allowed: %d)", res.Errors, o.maxErrors)
	}
	return nil
}

func newTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // never send load through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		MaxConnsPerHost:     concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// server is a lanyard process the generator started.
type server struct {
	cmd        *exec.Cmd
	url        string
	adminToken string
	dir        string
	logPath    string
	database   string
	dropSchema func() error
	keep       bool
	exited     chan struct{}
	waitErr    error
}

func startServer(ctx context.Context, o options, logf func(string, ...any)) (*server, error) {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("lanyard binary: %w (run make build, or pass -bin)", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, ownsDir := o.dataDir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "lanyard-bench-"); err != nil {
			return nil, err
		}
		ownsDir = true
	}
	removeDir := func() {
		if ownsDir {
			os.RemoveAll(dir)
		}
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	s := &server{
		url:        fmt.Sprintf("http://127.0.0.1:%d", port),
		adminToken: hex.EncodeToString(tok),
		dir:        dir,
		logPath:    filepath.Join(dir, "server.log"),
		database:   "sqlite",
		keep:       o.keep || !ownsDir,
		exited:     make(chan struct{}),
	}
	if o.databaseURL != "" {
		s.database = "postgres"
		if !strings.HasPrefix(o.databaseURL, "postgres") {
			s.database = o.databaseURL
		}
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		removeDir()
		return nil, err
	}
	defer logFile.Close()

	// The server's environment: ours without any LANYARD_* setting (so the caller's
	// shell cannot redirect it), plus the bench's own.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LANYARD_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"LANYARD_ADDR=127.0.0.1:"+fmt.Sprint(port),
		"LANYARD_ISSUER="+s.url,
		"LANYARD_DATA_DIR="+filepath.Join(dir, "data"),
		"LANYARD_ADMIN_TOKEN="+s.adminToken,
		"LANYARD_LOG_LEVEL=warn",
	)
	if o.databaseURL != "" {
		dsn := o.databaseURL
		if s.database == "postgres" && !o.exactDatabaseURL {
			// A schema of the run's own: the fresh data dir holds fresh secrets, which
			// the keys left in another run's schema would not match.
			if dsn, s.dropSchema, err = freshSchema(dsn); err != nil {
				removeDir()
				return nil, err
			}
		}
		env = append(env, "LANYARD_DATABASE_URL="+dsn)
	}
	env = append(env, o.serverEnv...)

	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = env
	s.cmd.Dir = dir
	s.cmd.Stdout = logFile
	s.cmd.Stderr = logFile
	setParentDeathSignal(s.cmd)
	if err := s.cmd.Start(); err != nil {
		removeDir()
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	logf("started %s serve (pid %d) at %s, data in %s", bin, s.cmd.Process.Pid, s.url, dir)

	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.stop(logf)
		return nil, err
	}
	// The server refuses assertions issued before it started (its replay protection),
	// and iat has whole-second resolution: let the second the server started in pass.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	return s, nil
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls /readyz until it answers 200, the process exits, or timeout passes.
func (s *server) waitReady(ctx context.Context, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := hc.Get(s.url + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready after %s (last: %v); log:\n%s", timeout, err, s.logTail())
		}
		select {
		case <-s.exited:
			return fmt.Errorf("server exited before it was ready (%v); log:\n%s", s.waitErr, s.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// stop sends SIGTERM, waits up to 15 s for a clean exit, then kills the process.
func (s *server) stop(logf func(string, ...any)) {
	select {
	case <-s.exited:
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			logf("server did not stop within 15s of SIGTERM; killing it")
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	var ee *exec.ExitError
	if s.waitErr != nil && !(errors.As(s.waitErr, &ee) && ee.ExitCode() == -1) {
		logf("server exited: %v; log tail:\n%s", s.waitErr, s.logTail())
	}
	if s.keep {
		logf("kept %s (server log: %s)", s.dir, s.logPath)
		return
	}
	if s.dropSchema != nil {
		if err := s.dropSchema(); err != nil {
			logf("drop bench schema: %v", err)
		}
	}
	os.RemoveAll(s.dir)
}

// registerAgent registers a fresh agent allowed scope that issues ES256 tokens: a
// private_key_jwt agent with a new ES256 key, or with secret a client_secret agent
// (then the key is nil and the secret is returned).
func registerAgent(ctx context.Context, c *client.Client, scope string, attested, secret bool) (*jose.JSONWebKey, *client.Agent, string, error) {
	key, pub, err := newES256Key()
	if err != nil {
		return nil, nil, "", err
	}

	suffix := make([]byte, 4)
	rand.Read(suffix)
	ttl := client.Duration(5 * time.Minute)
	req := client.RegisterAgentRequest{
		Name:        "bench-" + hex.EncodeToString(suffix),
		Namespace:   "bench",
		Owner:       "bench",
		Purpose:     "load test of token issuance",
		RiskLevel:   client.RiskLow,
		Credential:  client.CredentialSpec{Type: client.CredentialPrivateKeyJWT, JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{*pub}}},
		TokenAlg:    "ES256",
		MaxTokenTTL: &ttl,
	}
	if scope != "" {
		req.AllowedScopes = []string{scope}
	}
	if secret {
		key, req.Credential = nil, client.CredentialSpec{Type: client.CredentialClientSecret}
	}
	if attested {
		// The longest verdict the server allows, so that none expires mid-run.
		day := client.Duration(24 * time.Hour)
		req.AttestationTTL = &day
		req.Reference, _ = json.Marshal(benchMeasurements)
	}
	res, err := c.RegisterAgent(ctx, req)
	if err != nil {
		return nil, nil, "", fmt.Errorf("register bench agent: %w", err)
	}
	agent := &res.Agent
	if agent.Status == client.StatusPending {
		if agent, err = c.Transition(ctx, agent.ID, client.ActionActivate, "bench"); err != nil {
			return nil, nil, "", fmt.Errorf("activate bench agent: %w", err)
		}
	}
	if secret && res.ClientSecret == "" {
		return nil, nil, "", errors.New("register bench agent: no client_secret in the answer")
	}
	return key, agent, res.ClientSecret, nil
}

// newES256Key returns a fresh P-256 private key and its public JWK, with the RFC 7638
// thumbprint as key id.
func newES256Key() (*jose.JSONWebKey, *jose.JSONWebKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	pub := &jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: "ES256", Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, nil, err
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return &jose.JSONWebKey{Key: priv, KeyID: pub.KeyID, Algorithm: "ES256", Use: "sig"}, pub, nil
}

// benchMeasurements are the bench agent's reference measurements and what it reports.
var benchMeasurements = map[string]string{
	"model_digest":         "sha256:" + strings.Repeat("1a", 32),
	"prompt_digest":        "sha256:" + strings.Repeat("2b", 32),
	"tool_manifest_digest": "sha256:" + strings.Repeat("3c", 32),
}

// attestOnce gets the agent an affirming verdict.
func attestOnce(ctx context.Context, c *client.Client, auth client.AgentAuth) error {
	nonce, _, err := c.Challenge(ctx, auth)
	if err != nil {
		return fmt.Errorf("attestation challenge: %w", err)
	}
	v, err := c.Attest(ctx, auth, map[string]any{"nonce": nonce, "measurements": benchMeasurements})
	if err != nil {
		return fmt.Errorf("attest: %w", err)
	}
	if v.Status != "affirming" {
		return fmt.Errorf("attest: verdict %s: %s", v.Status, v.Raw)
	}
	return nil
}

// prepareAttestations fetches n challenges (each a real, agent-authenticated request)
// and builds one POST /v1/attestations body per challenge, with its own assertion.
// Evidence is the measurements alone (host "none"): the TPM and Sigstore checks have
// their own micro-benchmarks (docs/benchmarks.md).
func prepareAttestations(ctx context.Context, c *client.Client, auth client.AgentAuth, attestURL string, n int) ([][]byte, error) {
	signer, err := client.NewAssertionSigner(auth.Key)
	if err != nil {
		return nil, err
	}
	bodies := make([][]byte, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) { errOnce.Do(func() { firstErr = err; cancel() }) }
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				nonce, _, err := c.Challenge(ctx, auth)
				if err != nil {
					fail(fmt.Errorf("attestation challenge: %w", err))
					return
				}
				a, err := signer.Sign(auth.ClientID, attestURL, time.Now(), assertionLifetime)
				if err != nil {
					fail(err)
					return
				}
				if bodies[i], err = json.Marshal(map[string]any{
					"client_id": auth.ClientID, "client_assertion_type": client.JWTBearerAssertionType, "client_assertion": a,
					"nonce": nonce, "measurements": benchMeasurements,
				}); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return bodies, ctx.Err()
}

// presign builds n complete token request bodies, each with its own assertion (unique
// jti), signing on every core. Request i is made by clientIDs[i % len(clientIDs)] (all
// share key).
func presign(ctx context.Context, key *jose.JSONWebKey, clientIDs []string, audience, scope string, n int) ([][]byte, error) {
	signer, err := client.NewAssertionSigner(key)
	if err != nil {
		return nil, err
	}
	if len(clientIDs) == 0 {
		return nil, errors.New("presign: no client id")
	}
	suffix := "&client_assertion_type=" + url.QueryEscape(client.JWTBearerAssertionType)
	if scope != "" {
		suffix += "&scope=" + url.QueryEscape(scope)
	}
	suffix += "&client_assertion="
	bodies := make([][]byte, n)
	now := time.Now()
	// Signing happens before the clock starts, on every core even when the generator
	// runs with GOMAXPROCS=1 for the measured part.
	workers := runtime.NumCPU()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(workers))
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		firstErr error
		errOnce  sync.Once
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				clientID := clientIDs[i%len(clientIDs)]
				a, err := signer.Sign(clientID, audience, now, assertionLifetime)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				prefix := "grant_type=client_credentials&client_id=" + url.QueryEscape(clientID) + suffix
				b := make([]byte, 0, len(prefix)+len(a))
				bodies[i] = append(append(b, prefix...), a...)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return bodies, ctx.Err()
}

// result is the report of one run.
type result struct {
	Server        string  `json:"server"`
	Target        string  `json:"target"` // lanyard or hydra
	Auth          string  `json:"auth"`
	StartedServer bool    `json:"started_server"`
	Mode          string  `json:"mode"`
	Attested      bool    `json:"attested"`
	Database      string  `json:"database,omitempty"`
	Concurrency   int     `json:"concurrency"`
	WarmupSeconds float64 `json:"warmup_seconds"`
	// MeasuredSeconds is the measured window; shorter than -d when the pre-signed
	// assertions ran out.
	MeasuredSeconds float64  `json:"measured_seconds"`
	Exhausted       bool     `json:"assertions_exhausted"`
	OK              int64    `json:"ok"`
	Errors          int64    `json:"errors"`
	WarmupErrors    int64    `json:"warmup_errors"`
	TokensPerSecond float64  `json:"tokens_per_second"`
	P50ms           float64  `json:"p50_ms"`
	P95ms           float64  `json:"p95_ms"`
	P99ms           float64  `json:"p99_ms"`
	MaxMs           float64  `json:"max_ms"`
	FirstErrors     []string `json:"first_errors,omitempty"`
	// ServerCPUSecondsPer1000 is the server's user+system CPU time in the measured
	// window per 1,000 issued tokens; 0 when unknown.
	ServerCPUSecondsPer1000 float64 `json:"server_cpu_seconds_per_1000_tokens,omitempty"`
	ServerCPUCores          float64 `json:"server_cpu_cores_busy,omitempty"`
	ServerRSSMiB            float64 `json:"server_rss_mib,omitempty"`
	ServerPeakRSSMiB        float64 `json:"server_peak_rss_mib,omitempty"`
}

func (r *result) print(w io.Writer) {
	switch {
	case r.Mode == "introspect":
		fmt.Fprintf(w, "lanyard introspection: POST /oauth2/introspect, a client_secret_basic resource server, ES256 tokens\n")
	case r.Mode == "attest":
		fmt.Fprintf(w, "lanyard attestation: POST /v1/attestations, measurements only (host none), private_key_jwt ES256\n")
	case r.Attested:
		fmt.Fprintf(w, "lanyard token issuance: client_credentials, private_key_jwt ES256, through the attestation gate\n")
	default:
		fmt.Fprintf(w, "%s token issuance: client_credentials, %s, ES256 tokens\n", r.Target, r.Auth)
	}
	where := r.Server
	if r.StartedServer {
		where += " (started by bench, " + r.Database + ")"
	}
	fmt.Fprintf(w, "server:       %s\n", where)
	fmt.Fprintf(w, "clients:      %d, warm-up %.0fs, measured %.1fs\n", r.Concurrency, r.WarmupSeconds, r.MeasuredSeconds)
	if r.Exhausted {
		fmt.Fprintf(w, "note:         the pre-signed assertions ran out; the window was cut short (raise -rate)\n")
	}
	unit := "tokens"
	switch r.Mode {
	case "attest":
		unit = "verdicts"
	case "introspect":
		unit = "introspections"
	}
	fmt.Fprintf(w, "%-13s %d ok, %d errors (%d during warm-up)\n", unit+":", r.OK, r.Errors, r.WarmupErrors)
	fmt.Fprintf(w, "throughput:   %.0f %s/s\n", r.TokensPerSecond, unit)
	fmt.Fprintf(w, "latency:      p50 %.2fms  p95 %.2fms  p99 %.2fms  max %.2fms\n", r.P50ms, r.P95ms, r.P99ms, r.MaxMs)
	if r.ServerCPUSecondsPer1000 > 0 {
		fmt.Fprintf(w, "server CPU:   %.3f CPU-seconds per 1,000 %s (%.2f cores busy)\n", r.ServerCPUSecondsPer1000, unit, r.ServerCPUCores)
	} else {
		fmt.Fprintf(w, "server CPU:   unknown (pass -server-pid with -url)\n")
	}
	if r.ServerRSSMiB > 0 {
		fmt.Fprintf(w, "server RSS:   %.0f MiB at the end (peak %.0f MiB)\n", r.ServerRSSMiB, r.ServerPeakRSSMiB)
	}
	for i, e := range r.FirstErrors {
		fmt.Fprintf(w, "error %d:      %s\n", i+1, e)
	}
}

// drive runs the load and measures the window after the warm-up.
func drive(ctx context.Context, tgt target, bodies [][]byte, o options, pid int) *result {
	var (
		next         atomic.Int64
		exhausted    atomic.Bool
		okCount      atomic.Int64
		errCount     atomic.Int64
		warmupErrors atomic.Int64
		errMu        sync.Mutex
		firstErrors  []string // the first 5 in the measured window
		warmupFirst  []string // the first 3 in the warm-up
		lats         = make([][]time.Duration, o.concurrency)
	)
	start := time.Now()
	measureFrom := start.Add(o.warmup)
	end := measureFrom.Add(o.duration)
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	// CPU samples at the start and end of the measured window.
	cpuStart, cpuEnd := -1.0, -1.0
	measureEnd := end
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		select {
		case <-time.After(time.Until(measureFrom)):
		case <-runCtx.Done():
			return
		}
		cpuStart = procCPUSeconds(pid)
		<-runCtx.Done()
		cpuEnd = procCPUSeconds(pid)
	}()

	recordErr := func(measured bool, msg string) {
		if measured {
			errCount.Add(1)
		} else {
			warmupErrors.Add(1)
			msg = "(warm-up) " + msg
		}
		errMu.Lock()
		if measured && len(firstErrors) < 5 {
			firstErrors = append(firstErrors, msg)
		} else if !measured && len(warmupFirst) < 3 {
			warmupFirst = append(warmupFirst, msg)
		}
		errMu.Unlock()
	}

	var wg sync.WaitGroup
	var exhaustedAt atomic.Int64
	for w := range o.concurrency {
		wg.Add(1)
		lats[w] = make([]time.Duration, 0, len(bodies)/o.concurrency+1)
		go func() {
			defer wg.Done()
			conn := newRawClient(tgt, o.timeout)
			defer conn.close()
			for runCtx.Err() == nil {
				i := next.Add(1) - 1
				if int(i) >= len(bodies) {
					if exhausted.CompareAndSwap(false, true) {
						exhaustedAt.Store(time.Now().UnixNano())
						cancel()
					}
					return
				}
				t := time.Now()
				status, errBody, err := conn.post(bodies[i])
				done := time.Now()
				if t.Before(measureFrom) && !done.Before(end) {
					// Sent before the window and answered (or failed) only after it:
					// the client saw nothing for the whole measured window.
					msg := fmt.Sprintf("no answer during the whole measured window (waited %s)", done.Sub(t).Round(time.Millisecond))
					if err != nil {
						msg += ": " + err.Error()
					}
					recordErr(true, msg)
					return
				}
				if err != nil {
					if runCtx.Err() != nil {
						return // the run ended mid-request; not an error of the server
					}
					recordErr(t.After(measureFrom), err.Error())
					continue
				}
				measured := t.After(measureFrom) && done.Before(end)
				if status != tgt.okStatus {
					recordErr(measured, fmt.Sprintf("%d %s", status, strings.TrimSpace(string(errBody))))
					continue
				}
				if measured {
					okCount.Add(1)
					lats[w] = append(lats[w], done.Sub(t))
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	<-sampled
	if at := exhaustedAt.Load(); at != 0 {
		measureEnd = time.Unix(0, at)
	}

	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	window := measureEnd.Sub(measureFrom).Seconds()
	r := &result{
		Concurrency:     o.concurrency,
		WarmupSeconds:   o.warmup.Seconds(),
		MeasuredSeconds: max(window, 0),
		Exhausted:       exhausted.Load(),
		OK:              okCount.Load(),
		Errors:          errCount.Load(),
		WarmupErrors:    warmupErrors.Load(),
		FirstErrors:     append(firstErrors, warmupFirst...),
		P50ms:           ms(percentile(all, 0.50)),
		P95ms:           ms(percentile(all, 0.95)),
		P99ms:           ms(percentile(all, 0.99)),
	}
	if len(all) > 0 {
		r.MaxMs = ms(all[len(all)-1])
	}
	if window > 0 {
		r.TokensPerSecond = float64(r.OK) / window
	}
	if cpuStart >= 0 && cpuEnd >= cpuStart && r.OK > 0 && window > 0 {
		used := cpuEnd - cpuStart
		r.ServerCPUSecondsPer1000 = used / float64(r.OK) * 1000
		r.ServerCPUCores = used / window
	}
	if rss, peak := procRSSMiB(pid); rss > 0 {
		r.ServerRSSMiB, r.ServerPeakRSSMiB = rss, peak
	}
	return r
}

// percentile returns the q-quantile (nearest rank) of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
