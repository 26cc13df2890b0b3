package federation_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/federation"
	"github.com/lanyardhq/lanyard/internal/store"
)

// genericIssuer is a non-Entra OIDC issuer shaped like a Kubernetes service-account or
// SPIRE JWT-SVID issuer: ES256, no tid/oid/uti, a JWKS and (optionally) no discovery.
type genericIssuer struct {
	srv  *httptest.Server
	key  *ecdsa.PrivateKey
	kid  string
	disc bool
}

func newGeneric(t *testing.T, withDiscovery bool) *genericIssuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g := &genericIssuer{key: k, kid: "spire-1", disc: withDiscovery}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if !g.disc {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": g.srv.URL, "jwks_uri": g.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &g.key.PublicKey, KeyID: g.kid, Algorithm: "ES256", Use: "sig"},
			// Keys Lanyard cannot use are skipped, not fatal.
			{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac", Algorithm: "HS256"},
		}})
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *genericIssuer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: g.key}, (&jose.SignerOptions{}).WithHeader("kid", g.kid))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func TestGenericOIDCIssuer(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name      string
		discovery bool
	}{{"with discovery", true}, {"JWKS URL only (no discovery)", false}} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGeneric(t, tc.discovery)
			svc := federation.New(&memStore{}, &events{}, federation.Options{MinRefetch: time.Hour})
			req := federation.IssuerRequest{Issuer: g.srv.URL, Algs: []string{"ES256"}}
			if !tc.discovery {
				req.JWKSURL = g.srv.URL + "/keys"
			}
			st, err := svc.AddIssuer(t.Context(), "admin", req)
			if err != nil || st.Kind != "oidc" || st.Keys != 1 {
				t.Fatalf("AddIssuer: %+v %v", st, err)
			}
			sub := "spiffe://example.org/ns/agents/sa/invoice-triage"
			cred := []store.Credential{{Type: store.CredentialFederated, Issuer: g.srv.URL, Subject: sub, Audience: "api://lanyard"}}
			// A JWT-SVID: no jti, aud a list, no tid/oid.
			tok := g.token(t, map[string]any{"iss": g.srv.URL, "sub": sub, "aud": []string{"api://lanyard", "other"},
				"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix()})
			c, err := svc.Verify(t.Context(), tok, now)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := federation.Match(c, cred); err != nil {
				t.Fatal(err)
			}
			// Without jti or uti, the signature identifies the token for the replay cache.
			if len(c.ID) < 10 || c.ID[:4] != "sig:" {
				t.Fatalf("replay id %q", c.ID)
			}
			again, _ := svc.Verify(t.Context(), tok, now)
			if again.ID != c.ID {
				t.Fatal("the replay id of one token changed")
			}
			// No Entra rules for a generic issuer: a tid is just a claim.
			tok = g.token(t, map[string]any{"iss": g.srv.URL, "sub": sub, "aud": "api://lanyard", "tid": "x", "jti": "j1",
				"exp": now.Add(5 * time.Minute).Unix()})
			if c, err := svc.Verify(t.Context(), tok, now); err != nil || c.ID != "j1" {
				t.Fatalf("generic token with jti: %+v %v", c, err)
			}
			// The issuer's allow-list still applies: RS256 was not listed.
			tok = g.token(t, map[string]any{"iss": g.srv.URL, "sub": sub, "aud": "api://lanyard", "exp": now.Add(time.Minute).Unix()})
			svc2 := federation.New(&memStore{}, &events{}, federation.Options{})
			if _, err := svc2.AddIssuer(t.Context(), "admin", federation.IssuerRequest{Issuer: g.srv.URL, JWKSURL: g.srv.URL + "/keys"}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc2.Verify(t.Context(), tok, now); reason(err) != "federated_alg" {
				t.Fatalf("ES256 token for an RS256-only issuer: %v", err)
			}
			// A token with no exp is refused.
			tok = g.token(t, map[string]any{"iss": g.srv.URL, "sub": sub, "aud": "api://lanyard"})
			if _, err := svc.Verify(t.Context(), tok, now); reason(err) != "federated_no_exp" {
				t.Fatalf("no exp: %v", err)
			}
		})
	}
}
