package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// TestReplicasSeeEachOthersChanges: two servers on one PostgreSQL database, as behind a
// load balancer. What an operator does on one — suspend an agent, revoke a token,
// rotate the signing key — takes effect on the other at once (the change feed:
// PostgreSQL NOTIFY from triggers, LISTEN on every replica), not after a cache
// lifetime. Each wait below (3 s, generous for a loaded CI machine; the log shows the
// real delay, about a millisecond) is shorter than the 5 s the caches would otherwise
// take, and starts right after the other replica cached the agent.
func TestReplicasSeeEachOthersChanges(t *testing.T) {
	a := start(t, storetest.PostgresDSN(t))
	b := a.replica(t)
	waitLive(t, a)
	waitLive(t, b)
	if m := b.do(mustGet(t, b.base+"/metrics")); !strings.Contains(string(m.body), "lanyard_change_feed_live 1") {
		t.Error("lanyard_change_feed_live is not 1 while /readyz reports the feed live")
	}

	agent := a.registerJWT(t, "replicated", nil)
	tok := b.tokenJWT(t, agent, nil).json(t)["access_token"].(string) // b caches the agent now
	if b.introspect(t, tok)["active"] != true {
		t.Fatal("token inactive on the replica that issued it")
	}

	// Suspended on a: b refuses tokens and reports b's token inactive.
	if r := a.api(http.MethodPost, "/v1/agents/"+agent.id+"/suspend", map[string]string{"reason": "replica test"}); r.status != http.StatusOK {
		t.Fatalf("suspend: %d %s", r.status, r.body)
	}
	within(t, 3*time.Second, "b refuses tokens to an agent suspended on a", func() bool {
		return b.tokenJWT(t, agent, nil).status == http.StatusUnauthorized
	})
	if b.introspect(t, tok)["active"] != false {
		t.Fatal("b reports a suspended agent's token active")
	}

	// Resumed on a: b issues again.
	if r := a.api(http.MethodPost, "/v1/agents/"+agent.id+"/resume", map[string]string{"reason": "replica test"}); r.status != http.StatusOK {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	within(t, 3*time.Second, "b issues tokens to an agent resumed on a", func() bool {
		return b.tokenJWT(t, agent, nil).status == http.StatusOK
	})
	// The suspension cut off every token issued up to its second (iat has second
	// precision), so the token checked next is issued in a later second.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	tok2 := b.tokenJWT(t, agent, nil).json(t)["access_token"].(string)
	if b.introspect(t, tok2)["active"] != true {
		t.Fatal("a token issued after resumption is inactive on b")
	}

	// Revoked on a: inactive on b.
	req, _ := http.NewRequest(http.MethodPost, a.base+"/oauth2/revoke", strings.NewReader("token="+tok2))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+a.admin)
	if r := a.do(req); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	within(t, 3*time.Second, "b reports a token revoked on a inactive", func() bool {
		return b.introspect(t, tok2)["active"] == false
	})

	// Signing key rotated on a: b publishes and accepts the new key.
	r := a.api(http.MethodPost, "/v1/signing-keys/rotate", `{"alg":"ES256","immediate":true}`)
	if r.status != http.StatusOK {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	newKID, _ := r.json(t)["new_ref"].(string)
	if newKID == "" {
		t.Fatalf("rotation response without new_ref: %s", r.body)
	}
	within(t, 3*time.Second, "b publishes the key rotated on a", func() bool {
		return strings.Contains(string(b.do(mustGet(t, b.base+"/oauth2/jwks")).body), newKID)
	})
	tok3 := a.tokenJWT(t, agent, nil).json(t)["access_token"].(string)
	if kid, _ := headerOf(t, tok3)["kid"].(string); kid != newKID {
		t.Fatalf("a signs with %q after rotating to %q", kid, newKID)
	}
	if b.introspect(t, tok3)["active"] != true {
		t.Fatal("b does not accept a token signed with the key rotated on a")
	}
}

// waitLive waits until e reports its change feed live on /readyz.
func waitLive(t *testing.T, e *env) {
	t.Helper()
	within(t, 10*time.Second, "the change feed is live", func() bool {
		r := e.do(mustGet(t, e.base+"/readyz"))
		return r.status == http.StatusOK && strings.Contains(string(r.body), `"change_feed":"ok"`)
	})
}

// within polls cond until it holds or d has passed.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s: after %s", what, time.Since(start).Round(time.Millisecond))
}
