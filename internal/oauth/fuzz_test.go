package oauth

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/protocol"
)

// tokenErrorCodes are the error codes RFC 6749 §5.2 (and RFC 8707) allow at the token
// endpoint.
var tokenErrorCodes = map[string]bool{
	protocol.ErrInvalidRequest:       true,
	protocol.ErrInvalidClient:        true,
	protocol.ErrInvalidGrant:         true,
	protocol.ErrUnauthorizedClient:   true,
	protocol.ErrUnsupportedGrantType: true,
	protocol.ErrInvalidScope:         true,
	protocol.ErrInvalidTarget:        true,
}

// FuzzClientAssertion sends arbitrary strings as the client_assertion of a
// client_credentials request, with a registered ES256 agent in the store. Whatever
// the input, the answer is a 4xx RFC 6749 error: never a token, never a server error.
//
// The seed corpus in testdata/fuzz/FuzzClientAssertion (see
// testdata/gen_fuzz_seeds.go) covers the shapes an attacker tries first; the seeds
// added below are signed for the registered agent, so that mutations start from
// inputs that reach the signature and claim checks.
func FuzzClientAssertion(f *testing.F) {
	fx := newFixtureOn(f, openSQLiteStderr(f), Options{})
	a := fx.registerJWT(f, ecKey())
	now := fx.clock.Now()
	signed := func(key any, alg jose.SignatureAlgorithm, kid string, mod func(c map[string]any)) string {
		c := claims(a.ClientID, now)
		if mod != nil {
			mod(c)
		}
		return sign(f, key, alg, kid, c)
	}
	// A valid assertion, used once here: from now on it can only be a replay.
	used := signed(ecKey(), jose.ES256, "k1", nil)
	if rec := fx.token(assertionForm(used)); rec.Code != http.StatusOK {
		f.Fatalf("the fixture's valid assertion was refused: %d %s", rec.Code, rec.Body)
	}
	f.Add(used)
	f.Add(signed(ecKey2(), jose.ES256, "k1", nil)) // wrong signature, registered kid
	f.Add(signed(ecKey2(), jose.ES256, "", nil))   // wrong signature, no kid
	f.Add(signed(ecKey(), jose.ES256, "k2", nil))  // unknown kid
	f.Add(signed(rsaKey(), jose.RS256, "k1", nil)) // alg the key does not allow
	f.Add(signed(rsaKey(), jose.PS256, "", nil))   // no key allows PS256
	f.Add(signed(ecKey(), jose.ES256, "k1", func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }))
	f.Add(signed(ecKey(), jose.ES256, "k1", func(c map[string]any) { c["aud"] = "https://elsewhere.example.com" }))
	f.Add(signed(ecKey(), jose.ES256, "k1", func(c map[string]any) { delete(c, "jti") }))
	f.Add(signed(ecKey(), jose.ES256, "k1", func(c map[string]any) { c["sub"] = "agt_other" }))
	f.Add(signed(ecKey(), jose.ES256, "k1", func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() }))
	f.Add(signed(ecKey(), jose.ES256, "k1", func(c map[string]any) { c["iat"] = now.Add(-time.Hour).Unix() }))

	f.Fuzz(func(t *testing.T, assertion string) {
		rec := fx.token(assertionForm(assertion))
		if rec.Code < 400 || rec.Code >= 500 {
			t.Fatalf("status %d for assertion %q; want a 4xx. Body: %s", rec.Code, trim(assertion), rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q, want JSON", ct)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("body %q is not JSON: %v", rec.Body, err)
		}
		code, _ := body["error"].(string)
		if !tokenErrorCodes[code] {
			t.Errorf("error %q is not an RFC 6749 token endpoint error code", code)
		}
		if _, ok := body["access_token"]; ok {
			t.Error("an error response carries an access_token")
		}
	})
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
