package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// compareOptions are the flags of `bench compare`.
type compareOptions struct {
	bin, hydraBin string
	stores        []string
	databaseURL   string
	clients       []int
	auths         []string
	runs          int
	duration      time.Duration
	warmup        time.Duration
	ceiling       time.Duration
	lanyardRate   float64
	hydraRate     float64
	keep          bool
	jsonOut       string
	attested      bool
}

// compareMain runs `bench compare`: Lanyard and Ory Hydra side by side on the same
// store, the same client and the same load generator (this binary, GOMAXPROCS=1),
// alternating servers run by run, then prints one table and the targets.
func compareMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	var o compareOptions
	var stores, clients, auths string
	fs.StringVar(&o.bin, "bin", "bin/lanyard", "lanyard binary")
	fs.StringVar(&o.hydraBin, "hydra", "bin/hydra-v2.3.0", "Ory Hydra binary (make bench-compare builds it from test/bench/hydra)")
	fs.StringVar(&stores, "stores", "sqlite,postgres", "stores to compare on, in order: sqlite, postgres")
	fs.StringVar(&o.databaseURL, "database-url", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server (loopback) for the postgres store: Lanyard gets a fresh schema, Hydra a fresh database")
	fs.StringVar(&clients, "clients", "1,16,64", "concurrent clients of each cell")
	fs.StringVar(&auths, "auth", "private_key_jwt,client_secret_basic", "client authentication methods")
	fs.IntVar(&o.runs, "runs", 3, "runs per server and cell (Lanyard and Hydra alternate)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up of each run")
	fs.DurationVar(&o.ceiling, "ceiling", 3*time.Second, "how long to measure the ES256 sign+verify ceiling (0: skip)")
	fs.Float64Var(&o.lanyardRate, "lanyard-rate", 12000, "assertions pre-signed per second of a Lanyard run")
	fs.Float64Var(&o.hydraRate, "hydra-rate", 3000, "assertions pre-signed per second of a Hydra run")
	fs.BoolVar(&o.keep, "keep", false, "keep the servers' temp dirs and logs (and Hydra's database)")
	fs.StringVar(&o.jsonOut, "json-out", "", "also write every run's report to this file as JSON")
	fs.BoolVar(&o.attested, "attested", true, "at the largest client count with private_key_jwt, also run Lanyard with an agent that has a current attestation verdict (issuance through the attestation gate), alternating with the plain runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.stores = splitList(stores)
	o.auths = splitList(auths)
	var errs []error
	for _, s := range o.stores {
		if s != "sqlite" && s != "postgres" {
			errs = append(errs, fmt.Errorf("-stores: %q: want sqlite or postgres", s))
		}
	}
	for _, a := range o.auths {
		if a != authPrivateKeyJWT && a != authClientSecretBasic {
			errs = append(errs, fmt.Errorf("-auth: %q: want %s or %s", a, authPrivateKeyJWT, authClientSecretBasic))
		}
	}
	for _, c := range splitList(clients) {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 || n > 4096 {
			errs = append(errs, fmt.Errorf("-clients: %q: want 1..4096", c))
		}
		o.clients = append(o.clients, n)
	}
	if o.runs < 1 {
		errs = append(errs, errors.New("-runs: at least 1"))
	}
	if o.warmup+o.duration > maxRun {
		errs = append(errs, fmt.Errorf("-warmup + -d: at most %s", maxRun))
	}
	if len(o.stores) == 0 || len(o.auths) == 0 || len(o.clients) == 0 {
		errs = append(errs, errors.New("-stores, -auth and -clients must not be empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "compare: "+format+"\n", args...)
	}

	m := describeMachine()
	m.hydraVersion = hydraVersion(ctx, o.hydraBin)
	logf("%s; Ory Hydra %s", m, m.hydraVersion)
	if m.load1 > 1.5 {
		logf("WARNING: load average %.2f: the machine is busy, the figures will be low and noisy", m.load1)
	}
	var ceil float64
	if o.ceiling > 0 {
		ceil = es256Ceiling(o.ceiling)
		logf("machine ceiling: %.0f ES256 verify+sign pairs/s on %d cores", ceil, runtime.NumCPU())
	}

	var all []*cellRun
	var hydraConfigText string
	for _, store := range o.stores {
		pg := ""
		if store == "postgres" {
			pg = o.databaseURL
		}
		lan, err := startServer(ctx, options{bin: o.bin, databaseURL: pg, keep: o.keep}, func(f string, a ...any) { logf("lanyard: "+f, a...) })
		if err != nil {
			return fmt.Errorf("%s: start lanyard: %w", store, err)
		}
		hyd, err := startHydra(ctx, o.hydraBin, store, o.databaseURL, o.keep, logf)
		if err != nil {
			lan.stop(logf)
			return fmt.Errorf("%s: start hydra: %w", store, err)
		}
		hydraConfigText = hyd.config
		runs, err := compareStore(ctx, self, o, store, lan, hyd, logf)
		all = append(all, runs...)
		hyd.stop(logf)
		lan.stop(logf)
		if err != nil {
			return err
		}
	}
	m.load1End = loadAverage()
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	printComparison(os.Stdout, o, m, ceil, all, hydraConfigText)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// cellRun is one run of the generator against one server.
type cellRun struct {
	Store   string  `json:"store"`
	Auth    string  `json:"auth"`
	Clients int     `json:"clients"`
	Server  string  `json:"server"`
	Run     int     `json:"run"`
	Result  *result `json:"result,omitempty"`
	Failure string  `json:"failure,omitempty"`
}

// compareStore runs every cell on one store: for each auth and client count, the two
// servers alternate (A B A B …) for o.runs runs each. With o.attested, the cell of
// private_key_jwt at the largest client count also alternates a third kind of run:
// Lanyard issuing to an attested agent ("lanyard-attested").
func compareStore(ctx context.Context, self string, o compareOptions, store string, lan *server, hyd *hydraServer, logf func(string, ...any)) ([]*cellRun, error) {
	var out []*cellRun
	for _, auth := range o.auths {
		for _, c := range o.clients {
			for r := 1; r <= o.runs; r++ {
				servers := []string{"lanyard", "hydra"}
				if o.attested && auth == authPrivateKeyJWT && c == slices.Max(o.clients) {
					servers = append(servers, "lanyard-attested")
				}
				for _, srv := range servers {
					if ctx.Err() != nil {
						return out, ctx.Err()
					}
					args := []string{"-json", "-c", strconv.Itoa(c), "-d", o.duration.String(), "-warmup", o.warmup.String(),
						"-auth", auth, "-max-errors", "1000000000"}
					env := []string{"GOMAXPROCS=1"}
					if srv != "hydra" {
						args = append(args, "-url", lan.url, "-server-pid", strconv.Itoa(lan.cmd.Process.Pid),
							"-rate", strconv.FormatFloat(o.lanyardRate, 'f', -1, 64))
						env = append(env, "LANYARD_ADMIN_TOKEN="+lan.adminToken)
						if srv == "lanyard-attested" {
							args = append(args, "-attested")
						}
					} else {
						args = append(args, "-url", hyd.publicURL, "-hydra-admin", hyd.adminURL, "-server-pid", strconv.Itoa(hyd.pid()),
							"-rate", strconv.FormatFloat(o.hydraRate, 'f', -1, 64))
					}
					cr := &cellRun{Store: store, Auth: auth, Clients: c, Server: srv, Run: r}
					res, err := runGenerator(ctx, self, args, env)
					cr.Result = res
					if err != nil {
						cr.Failure = err.Error()
						logf("%s %s c=%d %s run %d: FAILED: %v", store, auth, c, srv, r, err)
					} else {
						logf("%s %s c=%d %s run %d: %.0f tokens/s, p99 %.1f ms, %d errors, %.3f CPU-s/1k",
							store, auth, c, srv, r, cr.Result.TokensPerSecond, cr.Result.P99ms, cr.Result.Errors, cr.Result.ServerCPUSecondsPer1000)
					}
					out = append(out, cr)
				}
			}
		}
	}
	return out, nil
}

// runGenerator runs this binary as the load generator and decodes its JSON report. A
// report is used even when the generator exits non-zero (e.g. no token issued).
func runGenerator(ctx context.Context, self string, args, env []string) (*result, error) {
	cmd := exec.CommandContext(ctx, self, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	base := os.Environ()
	cmd.Env = make([]string, 0, len(base)+len(env))
	for _, kv := range base {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, "LANYARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	runErr := cmd.Run()
	var r result
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		return nil, fmt.Errorf("generator: %v: %s", runErr, msg)
	}
	return &r, nil
}

// es256Ceiling measures, on every core, how many ES256 verify + sign pairs per second
// the machine does in a tight loop: the cryptography of one token (verify the client
// assertion, sign the access token), so the most tokens/s any server could issue here.
func es256Ceiling(d time.Duration) float64 {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	msg := bytes.Repeat([]byte("a"), 300) // a typical JWS signing input
	digest := sha256.Sum256(msg)
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	start := time.Now()
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local int64
			for time.Now().Before(stop) {
				h := sha256.Sum256(msg)
				if !ecdsa.VerifyASN1(&key.PublicKey, h[:], sig) {
					panic("ceiling: verify failed")
				}
				h2 := sha256.Sum256(msg)
				if _, err := ecdsa.SignASN1(rand.Reader, key, h2[:]); err != nil {
					panic(err)
				}
				local++
			}
			n.Add(local)
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// machine describes where the comparison ran.
type machine struct {
	date      string
	cpus      int
	model     string
	goVersion string
	// hydraVersion is what `hydra version` reports.
	hydraVersion string
	load1        float64
	load1End     float64
}

func (m machine) String() string {
	return fmt.Sprintf("%s, %d CPUs (%s), %s, load average %.2f", m.date, m.cpus, m.model, m.goVersion, m.load1)
}

func describeMachine() machine {
	m := machine{date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpus: runtime.NumCPU(), goVersion: runtime.Version(), load1: loadAverage()}
	m.model = "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// loadAverage is the 1-minute load average, or -1.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// stat summarises the runs of one server in one cell.
type stat struct {
	n, failed           int
	tps, p50, p99, cpu  float64 // medians
	tpsMin, tpsMax      float64
	errors, warmupError int64
}

func summarise(runs []*cellRun) stat {
	var s stat
	var tps, p50, p99, cpu []float64
	for _, r := range runs {
		if r.Result == nil {
			s.failed++
			continue
		}
		s.n++
		tps = append(tps, r.Result.TokensPerSecond)
		p50 = append(p50, r.Result.P50ms)
		p99 = append(p99, r.Result.P99ms)
		if r.Result.ServerCPUSecondsPer1000 > 0 {
			cpu = append(cpu, r.Result.ServerCPUSecondsPer1000)
		}
		s.errors += r.Result.Errors
		s.warmupError += r.Result.WarmupErrors
	}
	s.tps, s.p50, s.p99, s.cpu = median(tps), median(p50), median(p99), median(cpu)
	if len(tps) > 0 {
		s.tpsMin, s.tpsMax = slices.Min(tps), slices.Max(tps)
	}
	return s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (s stat) cells() string {
	if s.n == 0 {
		return fmt.Sprintf("failed (%d runs) | | | | ", s.failed)
	}
	cpu := "–"
	if s.cpu > 0 {
		cpu = fmt.Sprintf("%.3f", s.cpu)
	}
	errs := strconv.FormatInt(s.errors, 10)
	if s.failed > 0 {
		errs += fmt.Sprintf(" (+%d failed runs)", s.failed)
	}
	return fmt.Sprintf("%s (%s–%s) | %.2f | %.2f | %s | %s", num(s.tps), num(s.tpsMin), num(s.tpsMax), s.p50, s.p99, errs, cpu)
}

// num formats a rate with a thousands separator.
func num(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// printComparison prints the table, the ceiling, the targets and Hydra's configuration.
func printComparison(w io.Writer, o compareOptions, m machine, ceil float64, all []*cellRun, hydraConfigText string) {
	fmt.Fprintf(w, "\n## Lanyard vs Ory Hydra %s — token issuance, client_credentials, ES256 JWT access tokens\n\n", m.hydraVersion)
	fmt.Fprintf(w, "%s; load average at the end %.2f. Each cell: %d runs per server, alternating Lanyard and Hydra, %s warm-up + %s measured; the generator runs with GOMAXPROCS=1 on the same machine.\n",
		m, m.load1End, o.runs, o.warmup, o.duration)
	fmt.Fprintf(w, "tokens/s is the median (min–max) of the runs; p50/p99 (ms) and CPU-s/1k (server CPU seconds per 1,000 tokens) are medians; errors are summed over the measured windows.\n\n")
	fmt.Fprintf(w, "| store | auth | clients | Lanyard tokens/s | p50 | p99 | errors | CPU-s/1k | Hydra tokens/s | p50 | p99 | errors | CPU-s/1k | Lanyard/Hydra |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	pick := func(store, auth string, c int, srv string) []*cellRun {
		var out []*cellRun
		for _, r := range all {
			if r.Store == store && r.Auth == auth && r.Clients == c && r.Server == srv {
				out = append(out, r)
			}
		}
		return out
	}
	type key struct {
		store, auth string
		c           int
	}
	lanyard := map[key]stat{}
	hydraBest := map[string]float64{} // by auth: the best Hydra median of any cell
	hydraBestWhere := map[string]string{}
	attested := map[string]stat{} // by store
	for _, store := range o.stores {
		for _, auth := range o.auths {
			for _, c := range o.clients {
				l, h := summarise(pick(store, auth, c, "lanyard")), summarise(pick(store, auth, c, "hydra"))
				if l.n+l.failed+h.n+h.failed == 0 {
					continue
				}
				lanyard[key{store, auth, c}] = l
				if h.tps > hydraBest[auth] {
					hydraBest[auth] = h.tps
					hydraBestWhere[auth] = fmt.Sprintf("%s, %d clients", store, c)
				}
				ratio := "–"
				if h.tps > 0 && l.n > 0 {
					ratio = fmt.Sprintf("%.1f×", l.tps/h.tps)
				}
				fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s |\n", store, auth, c, l.cells(), h.cells(), ratio)
				if a := summarise(pick(store, auth, c, "lanyard-attested")); a.n+a.failed > 0 {
					attested[store] = a
					fmt.Fprintf(w, "| %s | %s, attested agent | %d | %s | n/a | | | | | |\n", store, auth, c, a.cells())
				}
			}
		}
	}

	fmt.Fprintf(w, "\n### Targets\n\n")
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT MET"
	}
	// Lanyard's best store for a given auth at 64 clients (or the largest count run).
	top := slices.Max(o.clients)
	best := func(auth string) (stat, string) {
		var b stat
		where := ""
		for _, store := range o.stores {
			if s, ok := lanyard[key{store, auth, top}]; ok && s.tps > b.tps {
				b, where = s, store
			}
		}
		return b, where
	}
	if ceil > 0 {
		fmt.Fprintf(w, "- machine ceiling (ES256 verify + sign in a tight loop on all %d cores): %s tokens/s\n", m.cpus, num(ceil))
	}
	if top != 64 {
		fmt.Fprintf(w, "- the targets are set at 64 clients; this comparison's largest count is %d, so the figures below are not the targets' own\n", top)
	}
	if slices.Contains(o.auths, authPrivateKeyJWT) {
		for _, store := range o.stores {
			s, ok := lanyard[key{store, authPrivateKeyJWT, top}]
			if !ok || s.n == 0 {
				continue
			}
			fmt.Fprintf(w, "- %s, private_key_jwt, %d clients: %s tokens/s (target ≥ 5,000): %s; p99 %.1f ms (target ≤ 20 ms): %s\n",
				store, top, num(s.tps), mark(s.tps >= 5000), s.p99, mark(s.p99 <= 20))
		}
		b, where := best(authPrivateKeyJWT)
		if hb := hydraBest[authPrivateKeyJWT]; hb > 0 && b.n > 0 {
			fmt.Fprintf(w, "- private_key_jwt vs Hydra at its best (%s tokens/s, %s): Lanyard %s tokens/s (%s, %d clients) = %.1f× (target ≥ 10×): %s\n",
				num(hb), hydraBestWhere[authPrivateKeyJWT], num(b.tps), where, top, b.tps/hb, mark(b.tps >= 10*hb))
		}
		if ceil > 0 && b.n > 0 {
			fmt.Fprintf(w, "- Lanyard's share of the machine ceiling: %s / %s = %.0f%% (goal ≥ 40%%): %s\n",
				num(b.tps), num(ceil), 100*b.tps/ceil, mark(b.tps >= 0.4*ceil))
		}
	}
	for _, store := range o.stores {
		a, ok := attested[store]
		l := lanyard[key{store, authPrivateKeyJWT, top}]
		if !ok || a.n == 0 || l.n == 0 {
			continue
		}
		fmt.Fprintf(w, "- %s, %d clients: issuance to an attested agent %s tokens/s = %.0f%% of plain issuance (target ≥ 90%%): %s\n",
			store, top, num(a.tps), 100*a.tps/l.tps, mark(a.tps >= 0.9*l.tps))
	}
	if slices.Contains(o.auths, authClientSecretBasic) {
		b, where := best(authClientSecretBasic)
		if hb := hydraBest[authClientSecretBasic]; hb > 0 && b.n > 0 {
			fmt.Fprintf(w, "- client_secret_basic vs Hydra at its best (%s tokens/s, %s): Lanyard %s tokens/s (%s, %d clients) = %.1f× (target ≥ 10×): %s\n",
				num(hb), hydraBestWhere[authClientSecretBasic], num(b.tps), where, top, b.tps/hb, mark(b.tps >= 10*hb))
		}
	}
	if m.load1 > 1.5 || m.load1End > 1.5 {
		fmt.Fprintf(w, "\nWARNING: the load average was %.2f at the start and %.2f at the end: the machine was busy, so these figures are not representative.\n", m.load1, m.load1End)
	}
	fmt.Fprintf(w, "\n### Ory Hydra's configuration\n\n`hydra serve all --config hydra.yml` (no `--dev`), after `hydra migrate sql up -e --yes` on a fresh store; DSN from the environment:\n")
	fmt.Fprintf(w, "SQLite `sqlite://<tmp>/hydra.sqlite?_fk=true&mode=rwc`, PostgreSQL `postgres://…/hydra_bench_<random>?max_conns=64&max_idle_conns=64&sslmode=disable`.\n")
	fmt.Fprintf(w, "Then an ES256 key is added to the `hydra.jwt.access-token` set (`POST /admin/keys/hydra.jwt.access-token {\"alg\":\"ES256\",\"use\":\"sig\"}`), and each run registers its client with `POST /admin/clients` (grant client_credentials, `access_token_strategy: jwt`, private_key_jwt with an ES256 JWKS or client_secret_basic). The token's alg is checked to be ES256 before each run.\n\n")
	fmt.Fprintf(w, "```yaml\n%s```\n", hydraConfigText)
}

// hydraVersion returns the version the Hydra binary reports, or "(unknown version)".
func hydraVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Version" {
				return strings.TrimSpace(v)
			}
		}
	}
	return "(unknown version)"
}
