package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"

	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2/clientcredentials"

	jose "github.com/go-jose/go-jose/v4"
)

// TestRotationAPI drives the rotation endpoints on the default (local) secrets backend:
// schedules with their validation, status, a manual credential rotation that keeps the
// old secret working through the grace, and an immediate signing key rotation after
// which tokens carry the new kid while the old key stays in the JWKS.
func TestRotationAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		r := e.api(http.MethodPost, "/v1/agents", map[string]any{
			"name": "rotated", "namespace": "ops", "owner": "sre", "allowed_scopes": []string{"x"},
			"credential": map[string]any{"type": "client_secret"},
		})
		if r.status != http.StatusCreated {
			t.Fatalf("register: %d %s", r.status, r.body)
		}
		id, s1 := r.json(t)["id"].(string), r.json(t)["client_secret"].(string)
		token := func(secret string) (string, error) {
			cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: e.base + "/oauth2/token", Scopes: []string{"x"}}
			tok, err := cc.Token(context.Background())
			if err != nil {
				return "", err
			}
			jws, err := josejwt.ParseSigned(tok.AccessToken, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				return "", err
			}
			return jws.Headers[0].KeyID, nil
		}

		for _, bad := range []string{`{"interval":"1s"}`, `{"interval":"720h","grace":"720h"}`, `{"interval":"soon"}`, `{"interval":"720h","extra":1}`} {
			if r := e.api(http.MethodPut, "/v1/agents/"+id+"/rotation", bad); r.status != http.StatusBadRequest {
				t.Errorf("PUT %s: %d %s", bad, r.status, r.body)
			}
		}
		if r := e.api(http.MethodPut, "/v1/agents/agt_missing/rotation", `{"interval":"720h"}`); r.status != http.StatusNotFound {
			t.Errorf("PUT for a missing agent: %d", r.status)
		}
		r = e.api(http.MethodPut, "/v1/agents/"+id+"/rotation", `{"interval":"720h","grace":"2h"}`)
		if r.status != http.StatusOK || r.json(t)["interval"] != "720h0m0s" || r.json(t)["in_policy"] != true {
			t.Fatalf("PUT: %d %s", r.status, r.body)
		}
		r = e.api(http.MethodPost, "/v1/agents/"+id+"/credentials/rotate", `{"grace":"1h"}`)
		if r.status != http.StatusOK {
			t.Fatalf("rotate: %d %s", r.status, r.body)
		}
		s2 := r.json(t)["client_secret"].(string)
		k1, err := token(s1)
		if err != nil {
			t.Fatalf("old secret in its grace: %v", err)
		}
		if _, err := token(s2); err != nil {
			t.Fatalf("new secret: %v", err)
		}
		r = e.api(http.MethodGet, "/v1/agents/"+id+"/rotation", nil)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"step":"active"`) {
			t.Fatalf("GET rotation: %d %s", r.status, r.body)
		}
		if r := e.api(http.MethodDelete, "/v1/agents/"+id+"/rotation", nil); r.status != http.StatusOK || r.json(t)["source"] != "server" {
			t.Fatalf("DELETE: %d %s", r.status, r.body)
		}

		if r := e.api(http.MethodPost, "/v1/signing-keys/rotate", `{"alg":"HS256"}`); r.status != http.StatusBadRequest {
			t.Errorf("rotate HS256: %d", r.status)
		}
		r = e.api(http.MethodPost, "/v1/signing-keys/rotate", `{"alg":"ES256","immediate":true}`)
		if r.status != http.StatusOK || r.json(t)["step"] != "done" {
			t.Fatalf("immediate rotation: %d %s", r.status, r.body)
		}
		k2, err := token(s2)
		if err != nil || k2 == k1 || k2 != r.json(t)["new_ref"] {
			t.Fatalf("token after the key rotation signed by %s (old %s, new %v): %v", k2, k1, r.json(t)["new_ref"], err)
		}
		jwks := e.do(mustGet(t, e.base+"/oauth2/jwks"))
		if !strings.Contains(string(jwks.body), k1) || !strings.Contains(string(jwks.body), k2) {
			t.Fatalf("JWKS lacks the old or the new key: %s", jwks.body)
		}
		audit := e.api(http.MethodGet, "/v1/audit?limit=1000", nil)
		for _, typ := range []string{"credential.rotation_policy_set", "credential.rotated", "signing_key.rotated"} {
			if !strings.Contains(string(audit.body), typ) {
				t.Errorf("audit lacks %s", typ)
			}
		}
	})
}
