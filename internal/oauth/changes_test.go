package oauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// introspectActive asks the provider, as admin, whether tok is active.
func (f *fixture) introspectActive(t *testing.T, tok string) bool {
	t.Helper()
	rec := post(f.p.Introspect, "/oauth2/introspect", url.Values{"token": {tok}}, func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+adminToken)
	})
	if rec.Code != http.StatusOK {
		t.Fatalf("introspect: %d %s", rec.Code, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return m["active"] == true
}

// TestIntrospectionWithLiveFeed: with a live change feed, introspection answers from
// memory, and what keeps that memory right is the feed (here driven by hand); when
// the feed is lost it reads the database again, and when it returns the provider
// re-reads what it may have missed.
func TestIntrospectionWithLiveFeed(t *testing.T) {
	f := newFixture(t, Options{})
	key := ecKey()
	a := f.registerJWT(t, key)
	tok := wantToken(t, f.token(assertionForm(f.assertion(t, a, key)))).AccessToken
	tok2 := wantToken(t, f.token(assertionForm(f.assertion(t, a, key)))).AccessToken

	// Another replica: the same database, a lifecycle service whose changes this
	// provider hears of only through the feed.
	hasher, err := lifecycle.NewSecretHasher([]byte("pepper-for-tests-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	other := lifecycle.New(f.st, f.audit, hasher, lifecycle.Options{Now: f.clock.Now, MaxTokenTTL: 24 * time.Hour})

	f.p.Live(true)
	if !f.p.live.Load() {
		t.Fatal("Live(true) did not make the provider live")
	}
	if !f.introspectActive(t, tok) {
		t.Fatal("token inactive before any change")
	}
	if _, err := other.Transition(t.Context(), "admin", a.ID, lifecycle.Suspend, "test"); err != nil {
		t.Fatal(err)
	}
	// Answered from memory: the suspension is not seen until the feed delivers it.
	if !f.introspectActive(t, tok) {
		t.Fatal("introspection read the database although the feed is live")
	}
	f.p.Changed(store.Change{Kind: store.ChangeAgent, AgentID: a.ID})
	if f.introspectActive(t, tok) {
		t.Fatal("token of an agent suspended on another replica still active after the feed reported it")
	}
	if _, err := other.Transition(t.Context(), "admin", a.ID, lifecycle.Resume, "test"); err != nil {
		t.Fatal(err)
	}
	f.p.Changed(store.Change{Kind: store.ChangeAgent, AgentID: a.ID, ClientID: a.ClientID})
	// Suspension cut off the tokens issued before it; new ones are active.
	if f.introspectActive(t, tok) {
		t.Fatal("a token issued before the suspension is active again after resumption")
	}
	f.clock.Advance(time.Second) // iat has second precision; the cut-off's own second counts as before
	tok = wantToken(t, f.token(assertionForm(f.assertion(t, a, key)))).AccessToken
	tok2 = wantToken(t, f.token(assertionForm(f.assertion(t, a, key)))).AccessToken
	if !f.introspectActive(t, tok) {
		t.Fatal("a token issued after the resumption is inactive")
	}

	// A revocation on another replica.
	claims := func(tok string) *accessClaims {
		c, err := f.p.verifyAccessToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := claims(tok)
	exp := time.Unix(c.Expiry, 0)
	if err := f.st.RevokeToken(t.Context(), store.RevokedToken{JTI: c.ID, AgentID: a.ID, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if !f.introspectActive(t, tok) {
		t.Fatal("introspection read the revocation from the database although the feed is live")
	}
	f.p.Changed(store.Change{Kind: store.ChangeRevoked, JTI: c.ID, ExpiresAt: exp})
	if f.introspectActive(t, tok) {
		t.Fatal("token revoked on another replica still active after the feed reported it")
	}

	// The feed is lost: the database is read again, so nothing is missed.
	f.p.Live(false)
	c2 := claims(tok2)
	if err := f.st.RevokeToken(t.Context(), store.RevokedToken{JTI: c2.ID, AgentID: a.ID, ExpiresAt: time.Unix(c2.Expiry, 0)}); err != nil {
		t.Fatal(err)
	}
	if f.introspectActive(t, tok2) {
		t.Fatal("feed lost: a revocation in the database was not seen")
	}
	if _, err := other.Transition(t.Context(), "admin", a.ID, lifecycle.Suspend, "test"); err != nil {
		t.Fatal(err)
	}
	// Back: whatever happened meanwhile is read again (the revocation of tok2, the
	// suspension) before memory is trusted.
	f.p.Live(true)
	if f.introspectActive(t, tok2) {
		t.Fatal("a revocation made while the feed was down was not loaded when it came back")
	}
	if f.introspectActive(t, tok) {
		t.Fatal("a suspension made while the feed was down was not seen when it came back")
	}
	f.refuse(t, assertionForm(f.assertion(t, a, key)), http.StatusUnauthorized, "invalid_client", "agent_suspended")
}

// TestRevocationSeenAtOnceLocally: a revocation through this provider is in its own
// memory at once, before any feed notification.
func TestRevocationSeenAtOnceLocally(t *testing.T) {
	f := newFixture(t, Options{})
	key := ecKey()
	a := f.registerJWT(t, key)
	tok := wantToken(t, f.token(assertionForm(f.assertion(t, a, key)))).AccessToken
	f.p.Live(true)
	rec := post(f.p.Revoke, "/oauth2/revoke", url.Values{"token": {tok}}, func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+adminToken)
	})
	if rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	if f.introspectActive(t, tok) {
		t.Fatal("revoked token still active on the replica that revoked it")
	}
	f.clock.Advance(time.Hour)
	f.p.revoked.purge(f.clock.Now())
	if n := f.p.revoked.len(); n != 0 {
		t.Errorf("%d revocations kept after their tokens expired", n)
	}
}
