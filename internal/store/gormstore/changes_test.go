package gormstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// eventTimeout bounds every wait for a feed event: generous, because the machine may
// be busy, and never reached when the feed works.
const eventTimeout = 15 * time.Second

// recorder is a store.ChangeHandler that queues every event: a bool for Live, a
// store.Change for Changed.
type recorder struct{ events chan any }

func (r *recorder) Live(live bool)         { r.events <- live }
func (r *recorder) Changed(c store.Change) { r.events <- c }

// next returns the next event, failing the test if none arrives in time.
func (r *recorder) next(t *testing.T) any {
	t.Helper()
	select {
	case e := <-r.events:
		return e
	case <-time.After(eventTimeout):
		t.Fatalf("no feed event within %s", eventTimeout)
		return nil
	}
}

// expect checks that the next events are exactly want, in order.
func (r *recorder) expect(t *testing.T, want ...any) {
	t.Helper()
	for i, w := range want {
		if got := r.next(t); !sameEvent(got, w) {
			t.Fatalf("event %d: got %+v, want %+v", i, got, w)
		}
	}
}

// expectSet checks that the next len(want) events are want, in any order.
func (r *recorder) expectSet(t *testing.T, want ...any) {
	t.Helper()
	left := append([]any(nil), want...)
	for range want {
		got := r.next(t)
		i := slices.IndexFunc(left, func(w any) bool { return sameEvent(got, w) })
		if i < 0 {
			t.Fatalf("got %+v, want one of %+v", got, left)
		}
		left = append(left[:i], left[i+1:]...)
	}
}

func sameEvent(got, want any) bool {
	g, gok := got.(store.Change)
	w, wok := want.(store.Change)
	if gok && wok {
		return g.Kind == w.Kind && g.AgentID == w.AgentID && g.ClientID == w.ClientID &&
			g.JTI == w.JTI && g.ExpiresAt.Equal(w.ExpiresAt)
	}
	return got == want
}

// runFeed runs f with a recorder until the test ends, and waits for its first
// Live(true). The cleanup checks that Run returns nil, reports Live(false) and leaves
// the feed not live.
func runFeed(t *testing.T, f *gormstore.ChangeFeed) *recorder {
	t.Helper()
	if f == nil {
		t.Fatal("ChangeFeed() = nil on PostgreSQL")
	}
	r := &recorder{events: make(chan any, 1024)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, r) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(eventTimeout):
			t.Fatalf("Run did not return within %s of its context ending", eventTimeout)
		}
		if f.Live() {
			t.Error("Live() = true after Run returned")
		}
		// Whatever the test left unread, the last event must be Live(false).
		var last any
		for len(r.events) > 0 {
			last = <-r.events
		}
		if last != false {
			t.Errorf("last event after Run returned: %+v, want Live(false)", last)
		}
	})
	r.expect(t, true)
	if !f.Live() {
		t.Fatal("Live() = false after Live(true)")
	}
	return r
}

// marker commits a revocation with a jti of its own: once its Change arrives, every
// notification committed before it has arrived too (PostgreSQL delivers them in
// commit order), so a test can check that something was not sent without sleeping.
type marker struct {
	s *gormstore.Store
	n int
}

func (m *marker) commit(t *testing.T) store.Change {
	t.Helper()
	m.n++
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	jti := fmt.Sprintf("marker-%d", m.n)
	if err := m.s.RevokeToken(t.Context(), store.RevokedToken{JTI: jti, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	return store.Change{Kind: store.ChangeRevoked, JTI: jti, ExpiresAt: exp}
}

func agentChange(id, clientID string) store.Change {
	return store.Change{Kind: store.ChangeAgent, AgentID: id, ClientID: clientID}
}

func newFeedAgent(id string) *store.Agent {
	return &store.Agent{
		ID: id, ClientID: "cli_" + id, Name: id, Namespace: "feed", Status: store.StatusActive,
		CredentialType: store.CredentialPrivateKeyJWT, TokenAlg: "ES256", Generation: 1,
	}
}

func newFeedCredential(id string) *store.Credential {
	return &store.Credential{ID: id, Type: store.CredentialPrivateKeyJWT, State: store.CredentialActive, JWKS: []byte(`{"keys":[]}`)}
}

func TestChangeFeedSQLite(t *testing.T) {
	if f := storetest.OpenSQLite(t).ChangeFeed(); f != nil {
		t.Errorf("ChangeFeed() on SQLite = %v, want nil", f)
	}
}

// TestChangeFeedWrites makes every kind of write through the Store's own methods and
// checks the Changes, in order. Notifications with the same payload in one
// transaction arrive once (a rotation touching several credentials sends one).
func TestChangeFeedWrites(t *testing.T) {
	s := storetest.OpenPostgres(t)
	f := s.ChangeFeed()
	// Waits time out and pings run between most events: delivery must not notice.
	f.SetPing(20*time.Millisecond, 5*time.Second)
	r := runFeed(t, f)
	ctx := t.Context()
	m := &marker{s: s}
	const id = "agt_feed1"

	a := newFeedAgent(id)
	if err := s.CreateAgent(ctx, a, newFeedCredential("crd_1")); err != nil {
		t.Fatal(err)
	}
	r.expect(t, agentChange(id, "cli_"+id), agentChange(id, ""))

	if _, err := s.UpdateAgent(ctx, id, func(a *store.Agent) error { a.Status = store.StatusSuspended; return nil }); err != nil {
		t.Fatal(err)
	}
	r.expect(t, agentChange(id, "cli_"+id))

	// A new client id: the entry under the old one is stale too.
	if _, err := s.UpdateAgent(ctx, id, func(a *store.Agent) error { a.ClientID = "cli_new"; return nil }); err != nil {
		t.Fatal(err)
	}
	r.expect(t, agentChange(id, "cli_"+id), agentChange(id, "cli_new"))

	// AddCredential bumps the agent's generation, then inserts the credential.
	if err := s.AddCredential(ctx, id, newFeedCredential("crd_2")); err != nil {
		t.Fatal(err)
	}
	r.expect(t, agentChange(id, "cli_new"), agentChange(id, ""))

	// Two credentials retired and one inserted: one credentials notification.
	if err := s.RotateCredential(ctx, id, newFeedCredential("crd_3"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.expect(t, agentChange(id, "cli_new"), agentChange(id, ""))

	now := time.Now()
	if err := s.CreateAttestation(ctx, &store.AttestationResult{ID: "att_1", AgentID: id, Status: store.AttestationAffirming,
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r.expect(t, agentChange(id, ""))

	// The expiry is rounded up to the second.
	exp := now.Add(time.Hour).Truncate(time.Second)
	if err := s.RevokeToken(ctx, store.RevokedToken{JTI: "jti_1", AgentID: id, ExpiresAt: exp.Add(500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	r.expect(t, store.Change{Kind: store.ChangeRevoked, JTI: "jti_1", ExpiresAt: exp.Add(time.Second)})
	// Revoking again inserts nothing, and purging expired revocations is not news.
	if err := s.RevokeToken(ctx, store.RevokedToken{JTI: "jti_1", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	old := exp.Add(-3 * time.Hour)
	if err := s.RevokeToken(ctx, store.RevokedToken{JTI: "jti_old", ExpiresAt: old.Add(250 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	r.expect(t, store.Change{Kind: store.ChangeRevoked, JTI: "jti_old", ExpiresAt: old.Add(time.Second)})
	if n, err := s.PurgeRevocations(ctx, now); err != nil || n != 1 {
		t.Fatalf("PurgeRevocations = %d, %v; want 1", n, err)
	}
	r.expect(t, m.commit(t))

	if err := s.CreateSigningKey(ctx, &store.SigningKey{KID: "k1", Alg: "ES256", State: store.KeyNext, PublicJWK: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	r.expect(t, store.Change{Kind: store.ChangeKeys})
	if _, err := s.UpdateSigningKey(ctx, "k1", func(k *store.SigningKey) error { k.State = store.KeyActive; return nil }); err != nil {
		t.Fatal(err)
	}
	r.expect(t, store.Change{Kind: store.ChangeKeys})

	if err := s.CreateFederationIssuer(ctx, &store.FederationIssuer{Issuer: "https://issuer.example", Kind: "oidc"}); err != nil {
		t.Fatal(err)
	}
	r.expect(t, store.Change{Kind: store.ChangeIssuers})
	if err := s.DeleteFederationIssuer(ctx, "https://issuer.example"); err != nil {
		t.Fatal(err)
	}
	r.expect(t, store.Change{Kind: store.ChangeIssuers})

	if err := s.DeleteCredentials(ctx, id); err != nil {
		t.Fatal(err)
	}
	r.expect(t, agentChange(id, "cli_new"), agentChange(id, ""))

	// No Store method deletes an agent; a DELETE (an operator's, say) is a change too,
	// and so are the rows it cascades to. The order of the two depends on trigger names.
	db := s.DB().(*gorm.DB)
	if err := db.WithContext(ctx).Exec("DELETE FROM agents WHERE id = ?", id).Error; err != nil {
		t.Fatal(err)
	}
	r.expectSet(t, agentChange(id, "cli_new"), agentChange(id, ""))
	r.expect(t, m.commit(t))
}

// TestChangeFeedTransactions checks that a notification is sent on commit, never
// before it, and never for a rolled-back write.
func TestChangeFeedTransactions(t *testing.T) {
	s := storetest.OpenPostgres(t)
	r := runFeed(t, s.ChangeFeed())
	m := &marker{s: s}
	db := s.DB().(*gorm.DB).WithContext(t.Context())

	tx := db.Begin()
	if err := tx.Create(newFeedAgent("agt_committed")).Error; err != nil {
		t.Fatal(err)
	}
	// Written but not committed: the marker, committed after, arrives first.
	r.expect(t, m.commit(t))
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	r.expect(t, agentChange("agt_committed", "cli_agt_committed"))

	tx = db.Begin()
	if err := tx.Create(newFeedAgent("agt_rolled_back")).Error; err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	r.expect(t, m.commit(t))
}

// TestChangeFeedSchemas checks that two stores on two schemas of one database each see
// only their own changes.
func TestChangeFeedSchemas(t *testing.T) {
	s1, s2 := storetest.OpenPostgres(t), storetest.OpenPostgres(t)
	r1, r2 := runFeed(t, s1.ChangeFeed()), runFeed(t, s2.ChangeFeed())
	m1, m2 := &marker{s: s1}, &marker{s: s2}

	if err := s2.CreateSigningKey(t.Context(), &store.SigningKey{KID: "k1", Alg: "ES256", State: store.KeyNext, PublicJWK: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	r2.expect(t, store.Change{Kind: store.ChangeKeys})
	r1.expect(t, m1.commit(t))
	r2.expect(t, m2.commit(t))
}

// TestChangeFeedSkipsMalformed checks that payloads the feed cannot parse are skipped
// and the feed carries on.
func TestChangeFeedSkipsMalformed(t *testing.T) {
	s := storetest.OpenPostgres(t)
	f := s.ChangeFeed()
	r := runFeed(t, f)
	m := &marker{s: s}
	db := s.DB().(*gorm.DB).WithContext(t.Context())
	for _, p := range []string{"", "x", "<schema>", "<schema>\tagent\t", "<schema>\trevoked\tjti\tsoon", "<schema>\tkeys\tk1", "<schema>\tnews\tx"} {
		if err := db.Exec("SELECT pg_notify('lanyard_changes', replace(?, '<schema>', current_schema()))", p).Error; err != nil {
			t.Fatal(err)
		}
	}
	r.expect(t, m.commit(t))
	if !f.Live() {
		t.Error("Live() = false after malformed payloads")
	}
}

// TestChangeFeedReconnects kills the listening backend and checks the handler hears
// Live(false), then Live(true) on a new connection that delivers changes again.
func TestChangeFeedReconnects(t *testing.T) {
	s := storetest.OpenPostgres(t)
	f := s.ChangeFeed()
	r := runFeed(t, f)
	m := &marker{s: s}
	pid := f.BackendPID()
	if pid == 0 {
		t.Fatal("BackendPID() = 0 while live")
	}
	var killed bool
	if err := s.DB().(*gorm.DB).WithContext(t.Context()).
		Raw("SELECT pg_terminate_backend(?)", int64(pid)).Scan(&killed).Error; err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
	}
	r.expect(t, false, true)
	if got := f.BackendPID(); got == 0 || got == pid {
		t.Errorf("BackendPID() after reconnecting = %d, want a new backend (was %d)", got, pid)
	}
	r.expect(t, m.commit(t))
}

// TestChangeFeedSilentConnection cuts the listener's connection off without closing
// it (as a vanished host or a dropped NAT entry would) and checks that the idle ping
// notices: Live(false), then Live(true) on a new connection.
func TestChangeFeedSilentConnection(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	s, err := gormstore.Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}

	// The feed's store reaches the server through a proxy that can stop forwarding.
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, u.Host)
	u.Host = p.addr()
	ps, err := gormstore.Open(t.Context(), u.String(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	f := ps.ChangeFeed()
	f.SetPing(200*time.Millisecond, time.Second)
	r := runFeed(t, f)
	m := &marker{s: s}
	r.expect(t, m.commit(t))

	p.silence()
	r.expect(t, false, true)
	r.expect(t, m.commit(t))
}

// proxy forwards TCP connections to a server; silence makes every connection open so
// far drop what it carries, both ways, without closing.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	mute  []*atomic.Bool
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			muted := new(atomic.Bool)
			p.mu.Lock()
			p.mute = append(p.mute, muted)
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer dst.Close()
				defer src.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !muted.Load() {
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
							t.Logf("proxy: %v", err)
						}
						return
					}
				}
			}
			wg.Go(func() { pipe(up, c) })
			wg.Go(func() { pipe(c, up) })
		}
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.mute {
		m.Store(true)
	}
}

func TestParseChange(t *testing.T) {
	exp := time.Unix(1735689600, 0).UTC()
	for _, tc := range []struct {
		name, payload string
		want          store.Change
		ours          bool
		err           bool
	}{
		{"agent row", "s\tagent\tagt_1\tcli_1", agentChange("agt_1", "cli_1"), true, false},
		{"agent's credential", "s\tagent\tagt_1", agentChange("agt_1", ""), true, false},
		{"revoked", "s\trevoked\tj1\t1735689600", store.Change{Kind: store.ChangeRevoked, JTI: "j1", ExpiresAt: exp}, true, false},
		{"keys", "s\tkeys\t", store.Change{Kind: store.ChangeKeys}, true, false},
		{"issuers", "s\tissuers\t", store.Change{Kind: store.ChangeIssuers}, true, false},
		{"other schema", "t\tagent\tagt_1", store.Change{}, false, false},
		{"other schema, unknown format", "t\tsomething new", store.Change{}, false, false},
		{"empty", "", store.Change{}, false, false},
		{"schema only", "s", store.Change{}, false, true},
		{"agent without id", "s\tagent\t", store.Change{}, false, true},
		{"agent with too much", "s\tagent\ta\tb\tc", store.Change{}, false, true},
		{"revoked without expiry", "s\trevoked\tj1", store.Change{}, false, true},
		{"revoked with a bad expiry", "s\trevoked\tj1\t1.5", store.Change{}, false, true},
		{"keys with a key", "s\tkeys\tk1", store.Change{}, false, true},
		{"unknown kind", "s\tnews\t", store.Change{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ours, err := gormstore.ParseChange(tc.payload, "s")
			if (err != nil) != tc.err || ours != tc.ours || !sameEvent(got, tc.want) {
				t.Errorf("ParseChange(%q) = %+v, %v, %v; want %+v, %v, error %v", tc.payload, got, ours, err, tc.want, tc.ours, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "j1") {
				t.Errorf("error %q quotes the payload", err)
			}
		})
	}
}

func FuzzParseChange(f *testing.F) {
	for _, p := range []string{"s\tagent\tagt_1\tcli_1", "s\trevoked\tj\t-1", "s\tkeys\t", "\t\t\t", "s\trevoked\tj\t99999999999999999999"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		c, ours, err := gormstore.ParseChange(payload, "s")
		if err != nil && ours {
			t.Errorf("ours with an error %v", err)
		}
		if ours && c.Kind == "" {
			t.Errorf("ours with no kind: %+v", c)
		}
	})
}
