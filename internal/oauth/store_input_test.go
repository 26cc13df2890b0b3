package oauth

import (
	"net/http"
	"net/url"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// TestHostileClientIDs sends client ids no database text column accepts as they are
// (NUL, invalid UTF-8) through every authentication method, before any
// authentication: the answer must be invalid_client, on every store, and never a
// server error an unauthenticated caller can provoke at will.
func TestHostileClientIDs(t *testing.T) {
	stores := []struct {
		name string
		open func(t testing.TB) *gormstore.Store
	}{
		{"sqlite", storetest.OpenSQLite},
		{"postgres", storetest.OpenPostgres},
	}
	ids := []struct {
		name string
		id   string
	}{
		{"NUL", "agt_\x00"},
		{"invalid UTF-8", "agt_\xff\xfe"},
		{"NUL and invalid UTF-8", "\x00\xff"},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			f := newFixtureOn(t, s.open(t), Options{})
			for _, id := range ids {
				t.Run(id.name, func(t *testing.T) {
					methods := []struct {
						name string
						form url.Values
						mod  []func(*http.Request)
					}{
						{"client_secret_post", url.Values{"grant_type": {"client_credentials"}, "client_id": {id.id}, "client_secret": {"x"}}, nil},
						{"client_secret_basic", url.Values{"grant_type": {"client_credentials"}},
							[]func(*http.Request){func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id.id), "x") }}},
						{"private_key_jwt", assertionForm(sign(t, ecKey(), jose.ES256, "k1", claims(id.id, f.clock.Now()))), nil},
					}
					for _, m := range methods {
						t.Run(m.name, func(t *testing.T) {
							rec := f.token(m.form, m.mod...)
							if rec.Code >= 500 {
								t.Fatalf("regression of a fixed bug: clientauth.go lookup passes an unauthenticated client id with NUL/invalid UTF-8 to the store; %s answers %d %s", s.name, rec.Code, rec.Body)
							}
							wantError(t, rec, http.StatusUnauthorized, "invalid_client")
						})
					}
				})
			}
		})
	}
}
