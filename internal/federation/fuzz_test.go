package federation_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/federation"
	"github.com/lanyardhq/lanyard/internal/federation/entratest"
	"github.com/lanyardhq/lanyard/internal/store"
)

// FuzzVerify drives the external-token validation path (Verify then Match) with
// arbitrary tokens. It must never panic, and nothing but a well-signed token of the
// trusted issuer may be accepted: the fuzzer cannot forge RS256 signatures, so every
// accepted token must carry the signed claims of one of the seeds.
func FuzzVerify(f *testing.F) {
	entra := entratest.New(f)
	svc := federation.New(&memStore{}, &events{}, federation.Options{MinRefetch: time.Hour})
	if _, err := svc.AddIssuer(f.Context(), "admin", federation.IssuerRequest{Issuer: entra.IssuerV2(), Kind: "entra"}); err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	good := map[string]bool{}
	for _, o := range []entratest.TokenOptions{
		{ObjectID: mi, Audience: "api://lanyard", AppID: "app-1"},
		{ObjectID: mi, Audience: "api://lanyard", IDType: "-"},
		{ObjectID: mi, Audience: "api://lanyard", Alg: "ES256"},
		{ObjectID: mi, Audience: "api://lanyard", Version: 1},
	} {
		o.UTI = "seed-" + string(rune('a'+len(good)))
		tok := entra.Token(f, o)
		good[o.UTI] = true
		f.Add(tok)
		parts := strings.Split(tok, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + ".." + parts[2])
		f.Add("eyJhbGciOiJub25lIn0." + parts[1] + ".")
	}
	for _, s := range []string{"", ".", "..", "a.b.c", "eyJ9.eyJ9.", `eyJhbGciOiJSUzI1NiIsImNyaXQiOlsieCJdfQ.e30.AA`,
		"eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.AA"} {
		f.Add(s)
	}
	creds := []store.Credential{{Type: store.CredentialFederated, Issuer: entra.IssuerV2(), Subject: mi, Audience: "api://lanyard"}}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := svc.Verify(t.Context(), raw, now)
		if err != nil {
			if _, ok := err.(*federation.Error); !ok {
				t.Fatalf("Verify returned %T, want *federation.Error: %v", err, err)
			}
			return
		}
		// Base64 malleability (unused trailing bits) may re-encode a signed token; its
		// claims are still the signed ones, and its uti one of the seeds'.
		if !good[c.ID] {
			t.Fatalf("accepted a token that was never signed: %q", raw)
		}
		if c.Issuer != entra.IssuerV2() || c.Expiry.IsZero() || c.ID == "" || c.TenantID != entra.Tenant {
			t.Fatalf("accepted claims: %+v", c)
		}
		_, _ = federation.Match(c, creds)
	})
}
