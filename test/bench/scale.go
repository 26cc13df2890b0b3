package main

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// scaleOptions are the flags of `bench scale`.
type scaleOptions struct {
	bin          string
	databaseURL  string
	sizes        []int
	concurrency  int
	duration     time.Duration
	warmup       time.Duration
	runs         int
	hotSet       int
	sample       int
	listRequests int
	keep         bool
	serverEnv    multiFlag
}

// scaleMain runs `bench scale`: Lanyard on PostgreSQL with a growing fleet of agents
// (bulk-loaded with COPY), measuring at each size issuance spread over many agents,
// introspection of tokens of many agents, GET /v1/agents pages, and the server's RSS.
func scaleMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	var o scaleOptions
	var sizes string
	fs.StringVar(&o.bin, "bin", "bin/lanyard", "lanyard binary")
	fs.StringVar(&o.databaseURL, "database-url", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server (loopback); the run gets a fresh schema, dropped at the end")
	fs.StringVar(&sizes, "sizes", "1000,1000000", "fleet sizes to measure at, ascending")
	fs.IntVar(&o.concurrency, "c", 64, "concurrent clients of the issuance and introspection runs")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up of each run")
	fs.IntVar(&o.runs, "runs", 3, "issuance and introspection runs per size")
	fs.IntVar(&o.hotSet, "hot-set", 1000, "the issuance and introspection runs the targets judge rotate over this many agents drawn at random from the fleet, at every size")
	fs.IntVar(&o.sample, "sample", 200000, "the spread issuance runs (at sizes above -hot-set) rotate over this many agents drawn at random: nearly every request from an agent the server has not cached")
	fs.IntVar(&o.listRequests, "list-requests", 100, "GET /v1/agents requests per page kind")
	fs.BoolVar(&o.keep, "keep", false, "keep the schema, the data dir and the server log")
	fs.Var(&o.serverEnv, "server-env", "extra KEY=VALUE for the server's environment (repeatable), e.g. LANYARD_PPROF_ADDR=127.0.0.1:6060 with a -tags pprof build")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prev := 0
	for _, f := range splitList(sizes) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= prev || n > 10_000_000 {
			return fmt.Errorf("-sizes: %q: want ascending counts up to 10,000,000", sizes)
		}
		o.sizes, prev = append(o.sizes, n), n
	}
	if len(o.sizes) == 0 || o.runs < 1 || o.hotSet < 1 || o.sample < 1 || o.listRequests < 1 {
		return errors.New("-sizes, -runs, -hot-set, -sample and -list-requests must be positive")
	}
	if o.warmup+o.duration > maxRun {
		return fmt.Errorf("-warmup + -d: at most %s", maxRun)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...) }
	m := describeMachine()
	logf("%s", m)
	if m.load1 > 1.5 {
		logf("WARNING: load average %.2f: the machine is busy, the figures will be low and noisy", m.load1)
	}

	dsn, dropSchema, err := freshSchema(o.databaseURL)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "lanyard-scale-")
	if err != nil {
		dropSchema()
		return err
	}
	defer func() {
		if o.keep {
			logf("kept %s and the schema of %s", dir, dsn)
			return
		}
		if err := dropSchema(); err != nil {
			logf("drop schema: %v", err)
		}
		os.RemoveAll(dir)
	}()

	// Every bulk agent authenticates with the same ES256 key: which key it is does
	// not change how the server finds an agent among a million.
	key, pub, err := newES256Key()
	if err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "agents-key.json")
	kb, _ := key.MarshalJSON()
	if err := os.WriteFile(keyPath, kb, 0o600); err != nil {
		return err
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{*pub}})

	srvOpts := options{bin: o.bin, databaseURL: dsn, exactDatabaseURL: true, dataDir: dir, serverEnv: o.serverEnv}
	srvLog := func(f string, a ...any) {
		if !strings.HasPrefix(f, "kept ") {
			logf("lanyard: "+f, a...)
		}
	}
	// The first start creates the tables (migrations) and the signing keys.
	srv, err := startServer(ctx, srvOpts, srvLog)
	if err != nil {
		return err
	}
	srv.stop(srvLog)

	var ids []string // every bulk agent's id (= client_id), in insertion order
	var levels []*scaleLevel
	for _, size := range o.sizes {
		lv := &scaleLevel{Agents: size}
		t0 := time.Now()
		more, err := bulkLoadAgents(ctx, dsn, len(ids), size, jwks)
		if err != nil {
			return fmt.Errorf("load %d agents: %w", size, err)
		}
		ids = append(ids, more...)
		lv.LoadSeconds = time.Since(t0).Seconds()
		logf("%d agents in the store (loaded %d in %.1fs, with VACUUM ANALYZE)", size, len(more), lv.LoadSeconds)

		if lv.Plans, err = explainQueries(ctx, dsn, ids); err != nil {
			return err
		}
		for _, p := range lv.Plans {
			logf("plan %s: %s", p.Query, p.Summary)
		}

		srv, err := startServer(ctx, srvOpts, srvLog)
		if err != nil {
			return err
		}
		err = measureLevel(ctx, self, o, srv, dir, keyPath, ids, lv, logf)
		srv.stop(srvLog)
		if err != nil {
			return err
		}
		levels = append(levels, lv)
	}
	m.load1End = loadAverage()
	printScale(os.Stdout, o, m, levels)
	return nil
}

// scaleLevel is what was measured at one fleet size.
type scaleLevel struct {
	Agents      int
	LoadSeconds float64
	Issue       []*result // over the hot set
	Spread      []*result // over -sample agents (sizes above the hot set)
	Introspect  []*result
	Lists       []listFigure
	Plans       []queryPlan
	PeakRSSMiB  float64 // after the hot-set runs and the listing
	// PeakRSSSpreadMiB is the peak after the spread runs too (0 without them).
	PeakRSSSpreadMiB float64
}

type listFigure struct {
	Name          string
	P50, P99, Max float64 // ms
	Errors        int
}

type queryPlan struct {
	Query   string
	Summary string // the plan's node types and the execution time
	SeqScan bool
}

// bulkLoadAgents adds agents number from..to-1 (active private_key_jwt agents allowed
// bench:read, as registration would create them, each with its credential) in one
// transaction with COPY, then ANALYZEs, and returns their ids.
func bulkLoadAgents(ctx context.Context, dsn string, from, to int, jwks []byte) ([]string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	n := to - from
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "agt_" + base32ID()
	}
	now := time.Now().UTC()
	agentCols := []string{"id", "client_id", "name", "namespace", "owner", "purpose", "risk_level", "status", "status_reason",
		"credential_type", "token_alg", "allowed_scopes", "allowed_resources", "max_token_ttl_seconds", "attestation_ttl_seconds",
		"can_introspect", "generation", "created_at", "updated_at"}
	credCols := []string{"id", "agent_id", "type", "state", "jwks", "created_at"}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background())
	// The change feed's triggers (migration 00008) would queue a notification per row,
	// two million for a million agents, which the commit must write to the notify queue
	// for no one: the server is stopped during the load and restarts with nothing
	// cached. session_replication_role = replica skips ordinary triggers (the harness
	// connects as the superuser postgres, which may set it); it skips the foreign key
	// checks too, which rows generated together here do not need. LOCAL: only this
	// transaction.
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return nil, fmt.Errorf("skip triggers: %w", err)
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"agents"}, agentCols, pgx.CopyFromFunc(func() func() ([]any, error) {
		i := 0
		return func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			k := from + i
			row := []any{ids[i], ids[i], fmt.Sprintf("fleet-agent-%07d", k), fmt.Sprintf("fleet-%02d", k%100), "bench-scale",
				"scale test", "low", "active", "", "private_key_jwt", "ES256", `["bench:read"]`, `[]`, int64(300), int64(0),
				false, int64(1), now, now}
			i++
			return row, nil
		}
	}()))
	if err != nil {
		return nil, fmt.Errorf("copy agents: %w", err)
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"credentials"}, credCols, pgx.CopyFromFunc(func() func() ([]any, error) {
		i := 0
		return func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			row := []any{"crd_" + base32ID(), ids[i], "private_key_jwt", "active", jwks, now}
			i++
			return row, nil
		}
	}()))
	if err != nil {
		return nil, fmt.Errorf("copy credentials: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	// VACUUM as well as ANALYZE: a fleet that grew over months has its pages' hint bits
	// set and its visibility map current, and autovacuum is not busy with it. Without
	// this, autovacuum and the first reads of each freshly loaded page work through the
	// million rows during the measured runs, on the same two cores.
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) agents"); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) credentials"); err != nil {
		return nil, err
	}
	return ids, nil
}

// listNamespace is the namespace of the filtered listing: bulk agent k is in namespace
// fleet-(k mod 100).
const listNamespace = "fleet-42"

// deepCursors returns the cursor 90% into the whole fleet, and the one half-way
// through listNamespace, where pages are deep but still full.
func deepCursors(ids []string) (deep, nsDeep string) {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	var ns []string
	for k := 42; k < len(ids); k += 100 {
		ns = append(ns, ids[k])
	}
	slices.Sort(ns)
	deep = sorted[len(sorted)*9/10]
	if len(ns) > 0 {
		nsDeep = ns[(len(ns)-1)/2]
	}
	return deep, nsDeep
}

// base32ID is an id in the server's own form: a UUIDv7 in lowercase base32hex.
func base32ID() string {
	u := uuid.Must(uuid.NewV7())
	return idEncoding.EncodeToString(u[:])
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// explainQueries runs EXPLAIN ANALYZE on the queries the measured paths make (as the
// store issues them) and reports each plan's shape.
func explainQueries(ctx context.Context, dsn string, ids []string) ([]queryPlan, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	deep, nsDeep := deepCursors(ids)
	some := ids[rand.IntN(len(ids))]
	queries := []struct {
		name, sql string
		args      []any
	}{
		{"list, first page", `SELECT * FROM "agents" ORDER BY id LIMIT 101`, nil},
		{"list, deep cursor", `SELECT * FROM "agents" WHERE id > $1 ORDER BY id LIMIT 101`, []any{deep}},
		{"list, namespace, deep cursor", `SELECT * FROM "agents" WHERE namespace = $1 AND id > $2 ORDER BY id LIMIT 101`, []any{listNamespace, nsDeep}},
		{"client lookup", `SELECT * FROM "agents" WHERE client_id = $1 LIMIT 1`, []any{some}},
		{"credentials of an agent", `SELECT * FROM "credentials" WHERE agent_id = $1`, []any{some}},
		{"agent by id (introspection while the change feed is down)", `SELECT * FROM "agents" WHERE id = $1 LIMIT 1`, []any{some}},
		{"revoked token (introspection while the change feed is down)", `SELECT count(*) FROM "revoked_tokens" WHERE jti = $1`, []any{"x"}},
	}
	var out []queryPlan
	for _, q := range queries {
		rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF) "+q.sql, q.args...)
		if err != nil {
			return nil, fmt.Errorf("explain %s: %w", q.name, err)
		}
		var nodes []string
		var exec string
		p := queryPlan{Query: q.name}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				rows.Close()
				return nil, err
			}
			t := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "->"))
			switch {
			case strings.HasPrefix(t, "Execution Time"):
				exec = t
			case strings.Contains(t, "(actual"): // a plan node, not one of its properties
				node := t
				if i := strings.Index(node, " (actual"); i >= 0 {
					node = node[:i]
				}
				nodes = append(nodes, node)
				if strings.HasPrefix(t, "Seq Scan") {
					p.SeqScan = true
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		p.Summary = strings.Join(nodes, " → ") + "; " + exec
		out = append(out, p)
	}
	return out, nil
}

// measureLevel measures one fleet size on a freshly started server.
func measureLevel(ctx context.Context, self string, o scaleOptions, srv *server, dir, keyPath string, ids []string, lv *scaleLevel, logf func(string, ...any)) error {
	// Request i comes from agent i mod len(file): a random hot set of the fleet, and
	// (above the hot set's size) a large random sample.
	shuffled := slices.Clone(ids)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	writeIDs := func(name string, n int) (string, error) {
		path := filepath.Join(dir, name)
		return path, os.WriteFile(path, []byte(strings.Join(shuffled[:min(n, len(shuffled))], "\n")+"\n"), 0o600)
	}
	hotPath, err := writeIDs("hot-ids.txt", o.hotSet)
	if err != nil {
		return err
	}
	spreadPath, err := writeIDs("spread-ids.txt", o.sample)
	if err != nil {
		return err
	}
	common := []string{"-json", "-url", srv.url, "-server-pid", strconv.Itoa(srv.cmd.Process.Pid), "-c", strconv.Itoa(o.concurrency),
		"-d", o.duration.String(), "-warmup", o.warmup.String(), "-key", keyPath, "-max-errors", "1000000000"}
	env := []string{"GOMAXPROCS=1", "LANYARD_ADMIN_TOKEN=" + srv.adminToken}
	gen := func(what, mode, idsPath string, r int) (*result, error) {
		res, err := runGenerator(ctx, self, append(slices.Clone(common), "-mode", mode, "-client-ids", idsPath), env)
		if err != nil {
			return nil, fmt.Errorf("%d agents, %s run %d: %w", lv.Agents, what, r, err)
		}
		logf("%d agents, %s run %d: %.0f/s, p99 %.1f ms, %d errors, %.3f CPU-s/1k", lv.Agents, what, r,
			res.TokensPerSecond, res.P99ms, res.Errors, res.ServerCPUSecondsPer1000)
		return res, nil
	}
	for r := 1; r <= o.runs; r++ {
		res, err := gen("issuance (hot set)", "token", hotPath, r)
		if err != nil {
			return err
		}
		lv.Issue = append(lv.Issue, res)
		if res, err = gen("introspection", "introspect", hotPath, r); err != nil {
			return err
		}
		lv.Introspect = append(lv.Introspect, res)
	}

	deep, nsDeep := deepCursors(ids)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for _, page := range []struct{ name, query string }{
		{"first page", "limit=100"},
		{"deep cursor (90%)", "limit=100&cursor=" + url.QueryEscape(deep)},
		{"namespace, deep cursor", "limit=100&namespace=" + listNamespace + "&cursor=" + url.QueryEscape(nsDeep)},
	} {
		f, err := timeList(ctx, hc, srv, page.query, o.listRequests)
		if err != nil {
			return fmt.Errorf("%d agents, list %s: %w", lv.Agents, page.name, err)
		}
		f.Name = page.name
		logf("%d agents, GET /v1/agents %s: p50 %.2f ms, p99 %.2f ms", lv.Agents, page.name, f.P50, f.P99)
		lv.Lists = append(lv.Lists, f)
	}
	_, lv.PeakRSSMiB = procRSSMiB(srv.cmd.Process.Pid)

	if lv.Agents > o.hotSet {
		for r := 1; r <= o.runs; r++ {
			res, err := gen("issuance (spread)", "token", spreadPath, r)
			if err != nil {
				return err
			}
			lv.Spread = append(lv.Spread, res)
		}
		_, lv.PeakRSSSpreadMiB = procRSSMiB(srv.cmd.Process.Pid)
	}
	return nil
}

// timeList times n sequential GET /v1/agents?query requests with the admin token,
// after 5 that are not counted (connection, first use of the prepared statements);
// every page must hold at least one agent.
func timeList(ctx context.Context, hc *http.Client, srv *server, query string, n int) (listFigure, error) {
	var f listFigure
	var lats []time.Duration
	u := srv.url + "/v1/agents?" + query
	const warmup = 5
	for i := range n + warmup {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return f, err
		}
		req.Header.Set("Authorization", "Bearer "+srv.adminToken)
		t := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return f, err
		}
		var page struct {
			Items []json.RawMessage `json:"items"`
		}
		derr := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&page)
		resp.Body.Close()
		d := time.Since(t)
		if resp.StatusCode != http.StatusOK || derr != nil || len(page.Items) == 0 {
			f.Errors++
			if f.Errors == 1 {
				return f, fmt.Errorf("status %d, %d items, %v", resp.StatusCode, len(page.Items), derr)
			}
			continue
		}
		if i >= warmup {
			lats = append(lats, d)
		}
	}
	slices.Sort(lats)
	f.P50, f.P99 = ms(percentile(lats, 0.5)), ms(percentile(lats, 0.99))
	if len(lats) > 0 {
		f.Max = ms(lats[len(lats)-1])
	}
	return f, nil
}

func resultStat(rs []*result) stat {
	runs := make([]*cellRun, len(rs))
	for i, r := range rs {
		runs[i] = &cellRun{Result: r}
	}
	return summarise(runs)
}

// printScale prints the table and the targets.
func printScale(w io.Writer, o scaleOptions, m machine, levels []*scaleLevel) {
	fmt.Fprintf(w, "\n## Lanyard at scale — PostgreSQL, agents bulk-loaded\n\n")
	fmt.Fprintf(w, "%s; load average at the end %.2f. %d clients, %d runs per figure (%s warm-up + %s measured; median (min–max)), generator GOMAXPROCS=1.\n",
		m, m.load1End, o.concurrency, o.runs, o.warmup, o.duration)
	fmt.Fprintf(w, "Hot set: issuance and introspection rotate over the same number of agents (%s, drawn at random) at every size; introspection checks %d tokens issued to them.\n",
		num(float64(o.hotSet)), introspectionTokens)
	fmt.Fprintf(w, "Spread: issuance rotates over up to %s random agents, so nearly every request comes from an agent the server has not cached. Listing: %d sequential requests per page kind, limit 100.\n\n",
		num(float64(o.sample)), o.listRequests)
	fmt.Fprintf(w, "| agents | load | issuance, hot set, tokens/s | p99 ms | CPU-s/1k | introspection /s | p99 ms | issuance, spread, tokens/s | p99 ms | CPU-s/1k | errors |")
	if len(levels) > 0 {
		for _, l := range levels[0].Lists {
			fmt.Fprintf(w, " list %s p50 / p99 ms |", l.Name)
		}
	}
	fmt.Fprintf(w, " peak RSS (hot / after spread) |\n|---|---|---|---|---|---|---|---|---|---|---|")
	if len(levels) > 0 {
		for range levels[0].Lists {
			fmt.Fprintf(w, "---|")
		}
	}
	fmt.Fprintln(w, "---|")
	rate := func(s stat) string {
		if s.n == 0 {
			return "–"
		}
		return fmt.Sprintf("%s (%s–%s)", num(s.tps), num(s.tpsMin), num(s.tpsMax))
	}
	for _, lv := range levels {
		is, in, sp := resultStat(lv.Issue), resultStat(lv.Introspect), resultStat(lv.Spread)
		spread, spreadRSS := "– | – | –", "–"
		if sp.n > 0 {
			spread = fmt.Sprintf("%s | %.1f | %.3f", rate(sp), sp.p99, sp.cpu)
			spreadRSS = fmt.Sprintf("%.0f MiB", lv.PeakRSSSpreadMiB)
		}
		fmt.Fprintf(w, "| %s | %.0fs | %s | %.1f | %.3f | %s | %.1f | %s | %d |", num(float64(lv.Agents)), lv.LoadSeconds,
			rate(is), is.p99, is.cpu, rate(in), in.p99, spread, is.errors+in.errors+sp.errors)
		for _, l := range lv.Lists {
			fmt.Fprintf(w, " %.2f / %.2f |", l.P50, l.P99)
		}
		fmt.Fprintf(w, " %.0f MiB / %s |\n", lv.PeakRSSMiB, spreadRSS)
	}
	fmt.Fprintf(w, "\nQuery plans (EXPLAIN ANALYZE):\n\n")
	for _, lv := range levels {
		for _, p := range lv.Plans {
			flag := ""
			if p.SeqScan {
				flag = " **sequential scan**"
			}
			fmt.Fprintf(w, "- %s agents, %s: %s%s\n", num(float64(lv.Agents)), p.Query, p.Summary, flag)
		}
	}
	if len(levels) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Targets\n\n")
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT MET"
	}
	base := levels[0]
	bi, bn := resultStat(base.Issue), resultStat(base.Introspect)
	for _, lv := range levels {
		is, in, sp := resultStat(lv.Issue), resultStat(lv.Introspect), resultStat(lv.Spread)
		size := num(float64(lv.Agents))
		if lv != base && bi.tps > 0 && bn.tps > 0 {
			fmt.Fprintf(w, "- %s agents: issuance (hot set) %s tokens/s = %.0f%% of the %s-agent figure (target ≥ 90%%): %s\n",
				size, num(is.tps), 100*is.tps/bi.tps, num(float64(base.Agents)), mark(is.tps >= 0.9*bi.tps))
			fmt.Fprintf(w, "- %s agents: introspection %s/s = %.0f%% of the %s-agent figure (target ≥ 90%%): %s\n",
				size, num(in.tps), 100*in.tps/bn.tps, num(float64(base.Agents)), mark(in.tps >= 0.9*bn.tps))
		}
		if sp.n > 0 && bi.tps > 0 {
			fmt.Fprintf(w, "- %s agents: issuance spread over %s agents %s tokens/s = %.0f%% of the %s-agent hot-set figure (same target): %s\n",
				size, num(float64(min(o.sample, lv.Agents))), num(sp.tps), 100*sp.tps/bi.tps, num(float64(base.Agents)), mark(sp.tps >= 0.9*bi.tps))
		}
		worst := 0.0
		for _, l := range lv.Lists {
			worst = max(worst, l.P99)
		}
		fmt.Fprintf(w, "- %s agents: slowest listing page p99 %.1f ms (target < 50 ms): %s\n", size, worst, mark(worst < 50))
		peak := max(lv.PeakRSSMiB, lv.PeakRSSSpreadMiB)
		fmt.Fprintf(w, "- %s agents: server peak RSS %.0f MiB (target ≤ 512 MiB): %s\n", size, peak, mark(peak <= 512))
		if o.concurrency == 64 {
			fmt.Fprintf(w, "- %s agents: introspection at 64 clients %s/s (target ≥ 10,000): %s\n", size, num(in.tps), mark(in.tps >= 10000))
		}
	}
	if m.load1 > 1.5 || m.load1End > 1.5 {
		fmt.Fprintf(w, "\nWARNING: the load average was %.2f at the start and %.2f at the end: the machine was busy, so these figures are not representative.\n", m.load1, m.load1End)
	}
}
