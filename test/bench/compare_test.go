package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

func TestMedianNum(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if m := median(nil); m != 0 {
		t.Errorf("median nil = %v", m)
	}
	for v, want := range map[float64]string{0: "0", 999.6: "1,000", 1234567: "1,234,567", 12: "12"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestSummarise(t *testing.T) {
	runs := []*cellRun{
		{Result: &result{TokensPerSecond: 100, P50ms: 1, P99ms: 10, Errors: 1, ServerCPUSecondsPer1000: 0.3}},
		{Result: &result{TokensPerSecond: 300, P50ms: 3, P99ms: 30, Errors: 2, ServerCPUSecondsPer1000: 0.1}},
		{Result: &result{TokensPerSecond: 200, P50ms: 2, P99ms: 20, ServerCPUSecondsPer1000: 0.2}},
		{Failure: "generator: exit status 1"},
	}
	s := summarise(runs)
	if s.n != 3 || s.failed != 1 || s.tps != 200 || s.tpsMin != 100 || s.tpsMax != 300 || s.p99 != 20 || s.cpu != 0.2 || s.errors != 3 {
		t.Errorf("summarise = %+v", s)
	}
	if c := s.cells(); !strings.Contains(c, "200 (100–300)") || !strings.Contains(c, "3 (+1 failed runs)") {
		t.Errorf("cells = %q", c)
	}
}

// TestPrintComparison checks the table's ratios and that each target is judged
// against the right figure: Lanyard at the top client count against Hydra's best cell.
func TestPrintComparison(t *testing.T) {
	o := compareOptions{stores: []string{"postgres"}, auths: []string{authPrivateKeyJWT, authClientSecretBasic}, clients: []int{16, 64}, runs: 1,
		duration: 10 * time.Second, warmup: 3 * time.Second}
	run := func(auth string, c int, srv string, tps, p99 float64) *cellRun {
		return &cellRun{Store: "postgres", Auth: auth, Clients: c, Server: srv, Result: &result{TokensPerSecond: tps, P99ms: p99}}
	}
	all := []*cellRun{
		run(authPrivateKeyJWT, 16, "lanyard", 6000, 5), run(authPrivateKeyJWT, 16, "hydra", 370, 90),
		run(authPrivateKeyJWT, 64, "lanyard", 7000, 25), run(authPrivateKeyJWT, 64, "hydra", 300, 2100),
		run(authPrivateKeyJWT, 64, "lanyard-attested", 6200, 27),
		run(authClientSecretBasic, 16, "lanyard", 9000, 3), run(authClientSecretBasic, 16, "hydra", 100, 300),
		run(authClientSecretBasic, 64, "lanyard", 9500, 12), run(authClientSecretBasic, 64, "hydra", 90, 900),
	}
	var b bytes.Buffer
	printComparison(&b, o, machine{cpus: 2, hydraVersion: "v2.3.0"}, 18000, all, "serve: {}\n")
	out := b.String()
	for _, want := range []string{
		"| postgres | private_key_jwt | 64 | 7,000 (7,000–7,000) | 0.00 | 25.00 | 0 | – | 300 (300–300) |",
		"| 23.3× |",
		"postgres, private_key_jwt, 64 clients: 7,000 tokens/s (target ≥ 5,000): met; p99 25.0 ms (target ≤ 20 ms): NOT MET",
		"Hydra at its best (370 tokens/s, postgres, 16 clients): Lanyard 7,000 tokens/s (postgres, 64 clients) = 18.9× (target ≥ 10×): met",
		"7,000 / 18,000 = 39% (goal ≥ 40%): NOT MET",
		"client_secret_basic vs Hydra at its best (100 tokens/s, postgres, 16 clients): Lanyard 9,500 tokens/s (postgres, 64 clients) = 95.0×",
		"Lanyard vs Ory Hydra v2.3.0",
		"| postgres | private_key_jwt, attested agent | 64 | 6,200 (6,200–6,200) |",
		"postgres, 64 clients: issuance to an attested agent 6,200 tokens/s = 89% of plain issuance (target ≥ 90%): NOT MET",
		"```yaml\nserve: {}\n```",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestAuthHeaderAndJWSAlg(t *testing.T) {
	r := &registration{clientID: "a:b", secret: "p@ss word"}
	h := r.authHeader()
	enc, ok := strings.CutPrefix(h, "Authorization: Basic ")
	if !ok || !strings.HasSuffix(enc, "\r\n") {
		t.Fatalf("header %q", h)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSuffix(enc, "\r\n"))
	// RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
	if string(raw) != "a%3Ab:p%40ss+word" {
		t.Errorf("credentials %q", raw)
	}
	if (&registration{clientID: "x"}).authHeader() != "" {
		t.Error("private_key_jwt registration has a Basic header")
	}

	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"at+jwt"}`))
	if alg, err := jwsAlg(hdr + ".e30.sig"); err != nil || alg != "ES256" {
		t.Errorf("jwsAlg = %q, %v", alg, err)
	}
	for _, bad := range []string{"opaque-token", "a.b", "!!.e30.sig"} {
		if _, err := jwsAlg(bad); err == nil {
			t.Errorf("jwsAlg(%q) accepted", bad)
		}
	}
}

func TestTokenBodies(t *testing.T) {
	key, _, err := newES256Key()
	if err != nil {
		t.Fatal(err)
	}
	reg := &registration{key: key, clientIDs: []string{"agt_a", "agt_b"}, audience: "http://issuer"}
	bodies, err := tokenBodies(context.Background(), reg, "bench:read", 4)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range bodies {
		f, err := url.ParseQuery(string(b))
		if err != nil {
			t.Fatal(err)
		}
		if want := reg.clientIDs[i%2]; f.Get("client_id") != want || f.Get("client_assertion") == "" {
			t.Errorf("body %d: client_id %q, want %q", i, f.Get("client_id"), want)
		}
	}
	sec := &registration{clientID: "agt_s", secret: "s"}
	bodies, _ = tokenBodies(context.Background(), sec, "bench:read", 3)
	if len(bodies) != 3 || string(bodies[2]) != "grant_type=client_credentials&scope=bench%3Aread" {
		t.Errorf("client_secret_basic bodies %q", bodies)
	}
}

func TestDeepCursors(t *testing.T) {
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = "agt_" + base32ID()
	}
	deep, ns := deepCursors(ids)
	var after, nsAfter int
	for k, id := range ids {
		if id > deep {
			after++
		}
		if k%100 == 42 && id > ns {
			nsAfter++
		}
	}
	if after != 99 || nsAfter != 5 {
		t.Errorf("after the deep cursor: %d agents (want 99), %d in %s (want 5)", after, nsAfter, listNamespace)
	}
}

// TestBulkLoadAgents loads agents the way bench scale does and reads them back through
// the store: they must be records the server accepts (active private_key_jwt agents
// with an active credential holding the key).
func TestBulkLoadAgents(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := t.Context()
	s, err := gormstore.Open(ctx, dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	_, pub, err := newES256Key()
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{*pub}})
	first, err := bulkLoadAgents(ctx, dsn, 0, 150, jwks)
	if err != nil {
		t.Fatal(err)
	}
	more, err := bulkLoadAgents(ctx, dsn, 150, 250, jwks)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 150 || len(more) != 100 {
		t.Fatalf("loaded %d + %d", len(first), len(more))
	}
	a, err := s.GetAgentByClientID(ctx, more[57])
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != more[57] || a.Status != store.StatusActive || a.CredentialType != store.CredentialPrivateKeyJWT || a.TokenAlg != "ES256" ||
		len(a.AllowedScopes) != 1 || a.AllowedScopes[0] != "bench:read" || a.MaxTokenTTLSeconds != 300 || a.Namespace != "fleet-07" || a.Generation != 1 {
		t.Errorf("agent %+v", a)
	}
	creds, err := s.ListCredentials(ctx, a.ID)
	if err != nil || len(creds) != 1 {
		t.Fatalf("credentials %v, %v", creds, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(creds[0].JWKS, &set); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != pub.KeyID ||
		creds[0].State != store.CredentialActive || creds[0].Type != store.CredentialPrivateKeyJWT {
		t.Errorf("credential %+v (%v)", creds[0], err)
	}
	deep, ns := deepCursors(append(first, more...))
	page, err := s.ListAgents(ctx, store.AgentFilter{Namespace: listNamespace, After: ns, Limit: 10})
	if err != nil || len(page) != 1 {
		t.Errorf("namespace page after %s: %d agents, %v", ns, len(page), err)
	}
	page, err = s.ListAgents(ctx, store.AgentFilter{After: deep, Limit: 100})
	if err != nil || len(page) != 24 {
		t.Errorf("page after the deep cursor: %d agents, %v", len(page), err)
	}
	plans, err := explainQueries(ctx, dsn, append(first, more...))
	if err != nil || len(plans) != 7 || !strings.Contains(plans[3].Summary, "agents_client_id_key") {
		t.Errorf("plans %+v, %v", plans, err)
	}
}
