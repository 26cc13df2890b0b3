package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAttestationChallengeLimit: a client holding 16 unexpired challenges is told to
// use one first (429 problem with Retry-After); another client is not affected.
func TestAttestationChallengeLimit(t *testing.T) {
	e := startWith(t, "", nil)
	a := e.registerJWT(t, "greedy", map[string]any{"reference": map[string]any{"model_digest": modelDigest}})
	b := e.registerJWT(t, "modest", map[string]any{"reference": map[string]any{"model_digest": modelDigest}})
	for range 16 {
		e.challenge(t, a)
	}
	r := e.form("/v1/attestations/challenge", url.Values{
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {a.key.sign(t, assertion{iss: a.id, aud: []string{e.base}})},
	}, "", "")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") || !strings.Contains(string(r.body), "too many outstanding challenges") {
		t.Fatalf("17th challenge: %d %v %s", r.status, r.header, r.body)
	}
	e.challenge(t, b)
}
