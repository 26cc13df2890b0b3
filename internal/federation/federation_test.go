package federation_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/federation"
	"github.com/lanyardhq/lanyard/internal/federation/entratest"
	"github.com/lanyardhq/lanyard/internal/store"
)

// memStore is an in-memory issuer store; the real ones run the store conformance suite.
type memStore struct {
	mu   sync.Mutex
	list []store.FederationIssuer
}

func (m *memStore) CreateFederationIssuer(_ context.Context, i *store.FederationIssuer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.list {
		if x.Issuer == i.Issuer {
			return store.ErrConflict
		}
	}
	m.list = append(m.list, *i)
	return nil
}

func (m *memStore) ListFederationIssuers(context.Context) ([]store.FederationIssuer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.FederationIssuer(nil), m.list...), nil
}

func (m *memStore) DeleteFederationIssuer(_ context.Context, iss string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.list {
		if x.Issuer == iss {
			m.list = append(m.list[:i], m.list[i+1:]...)
			return nil
		}
	}
	return store.ErrNotFound
}

type events struct {
	mu  sync.Mutex
	got []audit.Event
}

func (e *events) Record(_ context.Context, ev audit.Event) error {
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
	return nil
}

const mi = "6f1a6a0e-1111-4c7e-9a52-000000000001"

// setup returns a service trusting the fake tenant's v2 issuer.
func setup(t *testing.T, o federation.Options) (*federation.Service, *entratest.Server, *events) {
	t.Helper()
	entra := entratest.New(t)
	ev := &events{}
	if o.MinRefetch == 0 {
		o.MinRefetch = time.Hour
	}
	svc := federation.New(&memStore{}, ev, o)
	if _, err := svc.AddIssuer(t.Context(), "admin", federation.IssuerRequest{Issuer: entra.IssuerV2(), Kind: "entra"}); err != nil {
		t.Fatal(err)
	}
	return svc, entra, ev
}

func reason(err error) string {
	var fe *federation.Error
	if errors.As(err, &fe) {
		return fe.Reason
	}
	return "not a federation.Error: " + err.Error()
}

func TestIssuerRequestValidate(t *testing.T) {
	tests := []struct {
		name    string
		req     federation.IssuerRequest
		kind    string
		wantErr string
	}{
		{"entra v2 by host", federation.IssuerRequest{Issuer: "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"}, "entra", ""},
		{"entra v1 by host", federation.IssuerRequest{Issuer: "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"}, "entra", ""},
		{"github actions", federation.IssuerRequest{Issuer: "https://token.actions.githubusercontent.com", Algs: []string{"RS256"}}, "oidc", ""},
		{"kubernetes with ES256", federation.IssuerRequest{Issuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC", Algs: []string{"ES256", "RS256"}}, "oidc", ""},
		{"loopback http", federation.IssuerRequest{Issuer: "http://127.0.0.1:8443/t/v2.0", Kind: "entra"}, "entra", ""},
		{"multi-tenant placeholder", federation.IssuerRequest{Issuer: "https://login.microsoftonline.com/common/v2.0"}, "", "must name one tenant"},
		{"organizations", federation.IssuerRequest{Issuer: "https://login.microsoftonline.com/organizations/v2.0"}, "", "must name one tenant"},
		{"entra without tenant", federation.IssuerRequest{Issuer: "https://sts.windows.net/"}, "", "must name its tenant"},
		{"entra with ES256", federation.IssuerRequest{Issuer: "https://sts.windows.net/t/", Algs: []string{"ES256"}}, "", "Entra ID signs with RS256 only"},
		{"plain http", federation.IssuerRequest{Issuer: "http://issuer.example.com"}, "", "must be an https URL"},
		{"query", federation.IssuerRequest{Issuer: "https://issuer.example.com/?x=1"}, "", "must not have a query"},
		{"HS256", federation.IssuerRequest{Issuer: "https://issuer.example.com", Algs: []string{"HS256"}}, "", `"HS256" is not supported`},
		{"none", federation.IssuerRequest{Issuer: "https://issuer.example.com", Algs: []string{"none"}}, "", `"none" is not supported`},
		{"unknown kind", federation.IssuerRequest{Issuer: "https://issuer.example.com", Kind: "saml"}, "", "must be entra or oidc"},
		{"bad jwks url", federation.IssuerRequest{Issuer: "https://issuer.example.com", JWKSURL: "ftp://x"}, "", "jwks_url"},
		{"missing", federation.IssuerRequest{}, "", "issuer: is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss, err := tt.req.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if iss.Kind != tt.kind || len(iss.Algs) == 0 {
				t.Fatalf("Validate() = %+v, want kind %s", iss, tt.kind)
			}
		})
	}
}

// TestKeysNeverFetchedPerRequest: after the first fetch, verifying many tokens (and
// many tokens naming unknown kids) costs at most one fetch per MinRefetch.
func TestKeysNeverFetchedPerRequest(t *testing.T) {
	svc, entra, _ := setup(t, federation.Options{MinRefetch: time.Hour})
	base := entra.JWKSCalls() // AddIssuer fetched once
	if base != 1 {
		t.Fatalf("AddIssuer fetched the JWKS %d times, want 1", base)
	}
	for range 50 {
		tok := entra.Token(t, entratest.TokenOptions{ObjectID: mi, Audience: "api://lanyard"})
		if _, err := svc.Verify(t.Context(), tok, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	entra.StartRotation(t)
	for range 50 {
		_, err := svc.Verify(t.Context(), entra.Token(t, entratest.TokenOptions{ObjectID: mi, Audience: "api://lanyard"}), time.Now())
		if reason(err) != "federated_unknown_kid" {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	// AddIssuer's fetch was just now, so even the first unknown kid waits for MinRefetch.
	if got := entra.JWKSCalls(); got != 1 {
		t.Fatalf("JWKS fetched %d times for 100 verifications, want 1", got)
	}
	// After MinRefetch, one unknown kid triggers one fetch, which finds the new key.
	entra.Publish()
	later := time.Now().Add(time.Hour + time.Second)
	tok := entra.Token(t, entratest.TokenOptions{ObjectID: mi, Audience: "api://lanyard", IssuedAt: later.Add(-time.Minute)})
	if _, err := svc.Verify(t.Context(), tok, later); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if got := entra.JWKSCalls(); got != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", got)
	}
}

func TestJWKSDownKeepsCachedKeys(t *testing.T) {
	svc, entra, _ := setup(t, federation.Options{MinRefetch: time.Millisecond})
	entra.SetDown(true)
	now := time.Now()
	tok := entra.Token(t, entratest.TokenOptions{ObjectID: mi, Audience: "api://lanyard"})
	if _, err := svc.Verify(t.Context(), tok, now); err != nil {
		t.Fatalf("cached key while down: %v", err)
	}
	entra.StartRotation(t)
	_, err := svc.Verify(t.Context(), entra.Token(t, entratest.TokenOptions{ObjectID: mi, Audience: "api://lanyard"}), now.Add(time.Second))
	if reason(err) != "federated_jwks_unavailable" || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("new kid while down: %v", err)
	}
	st := svc.Issuers()[0]
	if st.Keys != 1 || !strings.Contains(st.LastError, "503") {
		t.Fatalf("issuer status while down: %+v", st)
	}
	// Background refresh while down keeps the keys too.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = svc.Run(ctx)
	if _, err := svc.Verify(t.Context(), tok, now.Add(2*time.Second)); err != nil {
		t.Fatalf("cached key after a failed refresh: %v", err)
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	entra := entratest.New(t)
	svc := federation.New(&memStore{}, &events{}, federation.Options{})
	// The v2 discovery document names the v2 issuer; trusting a look-alike fails to load.
	bogus := strings.TrimSuffix(entra.IssuerV2(), "/v2.0") + "/v2.0/"
	st, err := svc.AddIssuer(t.Context(), "admin", federation.IssuerRequest{Issuer: bogus, Kind: "oidc"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != 0 || !strings.Contains(st.LastError, "is not") {
		t.Fatalf("status: %+v", st)
	}
}

func TestVerifyAndMatch(t *testing.T) {
	svc, entra, ev := setup(t, federation.Options{})
	if len(ev.got) != 1 || ev.got[0].Type != "federation.issuer_added" {
		t.Fatalf("audit: %+v", ev.got)
	}
	now := time.Now()
	cred := store.Credential{Type: store.CredentialFederated, Issuer: entra.IssuerV2(), Subject: mi, Audience: "api://lanyard",
		AllowedClientIDs: store.StringList{"app-1"}, RequireAppToken: true}
	ok := entratest.TokenOptions{ObjectID: mi, Audience: "api://lanyard", AppID: "app-1"}
	tests := []struct {
		name   string
		mod    func(o *entratest.TokenOptions)
		reason string // "" = accepted
	}{
		{"valid", func(o *entratest.TokenOptions) {}, ""},
		{"wrong tenant", func(o *entratest.TokenOptions) { o.Tenant = "other" }, "federated_tenant"},
		{"v1 token from a v2-only trust", func(o *entratest.TokenOptions) { o.Version = 1 }, "issuer_not_trusted"},
		{"expired", func(o *entratest.TokenOptions) { o.IssuedAt = now.Add(-2 * time.Hour) }, "federated_expired"},
		{"expired within leeway", func(o *entratest.TokenOptions) { o.IssuedAt = now.Add(-time.Hour - 20*time.Second) }, ""},
		{"not yet valid", func(o *entratest.TokenOptions) { o.NotBefore = now.Add(2 * time.Minute) }, "federated_not_yet_valid"},
		{"iat in the future", func(o *entratest.TokenOptions) { o.IssuedAt = now.Add(5 * time.Minute) }, "federated_not_yet_valid"},
		{"ES256", func(o *entratest.TokenOptions) { o.Alg = "ES256" }, "federated_alg"},
		{"wrong subject", func(o *entratest.TokenOptions) { o.ObjectID = "x" }, "federated_subject"},
		{"oid differs", func(o *entratest.TokenOptions) { o.Subject = mi; o.ObjectID = "x" }, "federated_subject"},
		{"wrong audience", func(o *entratest.TokenOptions) { o.Audience = "api://other" }, "federated_audience"},
		{"user token", func(o *entratest.TokenOptions) { o.IDType = "user" }, "federated_app_token"},
		{"other client", func(o *entratest.TokenOptions) { o.AppID = "app-2" }, "federated_client_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			c, err := svc.Verify(t.Context(), entra.Token(t, o), now)
			if err == nil {
				_, err = federation.Match(c, []store.Credential{cred})
			}
			switch {
			case tt.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.reason != "" && reason(err) != tt.reason:
				t.Fatalf("got %v, want reason %s", err, tt.reason)
			}
			if err == nil && (c.ID == "" || c.TenantID != entra.Tenant || c.Version != "2.0") {
				t.Fatalf("claims: %+v", c)
			}
		})
	}
}

func TestTrustIsConfigured(t *testing.T) {
	entra := entratest.New(t)
	cfg, err := federation.ParseConfigIssuers("https://token.actions.githubusercontent.com, https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/")
	if err != nil {
		t.Fatal(err)
	}
	st := &memStore{}
	svc := federation.New(st, &events{}, federation.Options{Config: cfg})
	if !svc.Trusted("https://token.actions.githubusercontent.com") || svc.Trusted(entra.IssuerV2()) {
		t.Fatal("trust does not follow the configuration")
	}
	if _, err := svc.Verify(t.Context(), entra.Token(t, entratest.TokenOptions{ObjectID: mi}), time.Now()); reason(err) != "issuer_not_trusted" {
		t.Fatalf("untrusted issuer: %v", err)
	}
	if err := svc.RemoveIssuer(t.Context(), "admin", "https://token.actions.githubusercontent.com"); err == nil || !strings.Contains(err.Error(), "server configuration") {
		t.Fatalf("removing a configured issuer: %v", err)
	}
	// Another replica's addition is seen after Load.
	_ = st.CreateFederationIssuer(t.Context(), &store.FederationIssuer{Issuer: entra.IssuerV2(), Kind: "entra", Algs: store.StringList{"RS256"}})
	if err := svc.Load(t.Context()); err != nil || !svc.Trusted(entra.IssuerV2()) {
		t.Fatalf("Load: %v", err)
	}
	if _, err := federation.ParseConfigIssuers("http://insecure.example.com"); err == nil {
		t.Fatal("an http issuer was accepted in the configuration")
	}
}

// BenchmarkVerify measures the external-token path with warm keys: header, alg
// allow-list, cached key, RS256 signature, claims, Entra checks and Match.
func BenchmarkVerify(b *testing.B) {
	entra := entratest.New(b)
	svc := federation.New(&memStore{}, &events{}, federation.Options{MinRefetch: time.Hour})
	if _, err := svc.AddIssuer(b.Context(), "admin", federation.IssuerRequest{Issuer: entra.IssuerV2(), Kind: "entra"}); err != nil {
		b.Fatal(err)
	}
	tok := entra.Token(b, entratest.TokenOptions{ObjectID: mi, Audience: "api://lanyard", AppID: "app-1"})
	creds := []store.Credential{{Type: store.CredentialFederated, Issuer: entra.IssuerV2(), Subject: mi, Audience: "api://lanyard"}}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := svc.Verify(context.Background(), tok, now)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := federation.Match(c, creds); err != nil {
				b.Fatal(err)
			}
		}
	})
}
