package oauth

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// countingStore wraps the real store, counts client loads and can run a hook in the
// middle of one (between reading the agent and reading its credentials).
type countingStore struct {
	clientStore
	loads atomic.Int64

	mu   sync.Mutex
	hook func()
}

func (s *countingStore) GetAgentByClientID(ctx context.Context, id string) (*store.Agent, error) {
	s.loads.Add(1)
	return s.clientStore.GetAgentByClientID(ctx, id)
}

func (s *countingStore) ListCredentials(ctx context.Context, agentID string) ([]store.Credential, error) {
	s.mu.Lock()
	hook := s.hook
	s.hook = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return s.clientStore.ListCredentials(ctx, agentID)
}

func (s *countingStore) setHook(fn func()) {
	s.mu.Lock()
	s.hook = fn
	s.mu.Unlock()
}

// cacheFixture is a clientCache over the fixture's real store, invalidated by the
// lifecycle service exactly as the Provider's cache is.
func cacheFixture(t *testing.T, ttl time.Duration) (*fixture, *clientCache, *countingStore) {
	f := newFixture(t, Options{})
	cs := &countingStore{clientStore: f.st}
	c := newClientCache(cs, cacheOptions{ttl: ttl, max: 1000, now: f.clock.Now})
	f.svc.OnChange(func(a *store.Agent) { c.invalidate(a.ClientID) })
	return f, c, cs
}

func TestClientCacheInvalidateDuringLoad(t *testing.T) {
	f, c, cs := cacheFixture(t, time.Hour)
	a := f.registerJWT(t, ecKey())

	// While a load has read the agent but not yet its credentials, an admin narrows
	// the agent's scopes. The load's result is stale: it may be returned to the
	// request that raced the change, but it must not be cached.
	narrowed := []string{"tickets:read"}
	cs.setHook(func() {
		if _, err := f.svc.Patch(context.Background(), "admin", a.ID, lifecycle.PatchRequest{AllowedScopes: &narrowed}); err != nil {
			t.Errorf("Patch: %v", err)
		}
	})
	first, err := c.get(t.Context(), a.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.agent.AllowedScopes) != 2 {
		t.Fatalf("the racing load saw scopes %v; the hook did not run in the middle of the load", first.agent.AllowedScopes)
	}

	second, err := c.get(t.Context(), a.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(second.agent.AllowedScopes, narrowed) {
		t.Errorf("after the change the cache serves scopes %v, want %v: the stale load was cached", second.agent.AllowedScopes, narrowed)
	}
	if n := cs.loads.Load(); n != 2 {
		t.Errorf("%d loads, want 2 (the raced one, then a fresh one)", n)
	}

	// The fresh result is cached.
	if _, err := c.get(t.Context(), a.ClientID); err != nil {
		t.Fatal(err)
	}
	if n := cs.loads.Load(); n != 2 {
		t.Errorf("%d loads after a third get, want the entry served from the cache", n)
	}
}

func TestClientCacheInvalidate(t *testing.T) {
	f, c, cs := cacheFixture(t, time.Hour)
	a := f.registerJWT(t, ecKey())
	if _, err := c.get(t.Context(), a.ClientID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Transition(t.Context(), "admin", a.ID, lifecycle.Suspend, ""); err != nil {
		t.Fatal(err)
	}
	got, err := c.get(t.Context(), a.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if got.agent.Status != store.StatusSuspended || cs.loads.Load() != 2 {
		t.Errorf("after suspend: cached status %s after %d loads; want suspended, reloaded", got.agent.Status, cs.loads.Load())
	}
}

func TestClientCacheTTL(t *testing.T) {
	const ttl = 5 * time.Second
	f, c, cs := cacheFixture(t, ttl)
	a := f.registerJWT(t, ecKey())

	steps := []struct {
		advance   time.Duration
		wantLoads int64
	}{
		{0, 1},                     // the first get loads
		{ttl - time.Nanosecond, 1}, // still fresh
		{time.Nanosecond, 2},       // exactly ttl old: reloaded
		{ttl / 2, 2},               // the reload restarted the entry's age
		{ttl / 2, 3},               // and it expires in turn
		{24 * time.Hour, 4},        // long idle
		{0, 4},                     // served from the cache again
	}
	for i, s := range steps {
		f.clock.Advance(s.advance)
		if _, err := c.get(t.Context(), a.ClientID); err != nil {
			t.Fatal(err)
		}
		if n := cs.loads.Load(); n != s.wantLoads {
			t.Errorf("step %d (+%s): %d loads, want %d", i, s.advance, n, s.wantLoads)
		}
	}
}

func TestClientCacheUnknownClient(t *testing.T) {
	_, c, cs := cacheFixture(t, time.Hour)
	for range 2 {
		if _, err := c.get(t.Context(), "agt_nobody"); !errors.Is(err, errUnknownClient) {
			t.Fatalf("get = %v, want errUnknownClient", err)
		}
	}
	// Unknown ids are not cached (an attacker could fill memory with them).
	if n := len(c.entries); n != 0 {
		t.Errorf("cache holds %d entries after unknown clients", n)
	}
	if n := cs.loads.Load(); n != 2 {
		t.Errorf("%d loads, want 2", n)
	}
}

func TestClientCacheConcurrentGetsShareOneLoad(t *testing.T) {
	f, c, cs := cacheFixture(t, time.Hour)
	a := f.registerJWT(t, ecKey())
	release := make(chan struct{})
	entered := make(chan struct{})
	cs.setHook(func() { close(entered); <-release })

	var wg sync.WaitGroup
	results := make([]*client, 8)
	for i := range results {
		wg.Go(func() {
			cl, err := c.get(context.Background(), a.ClientID)
			if err != nil {
				t.Error(err)
			}
			results[i] = cl
		})
	}
	<-entered
	// Nothing observable says the other goroutines are waiting on the load in
	// flight, so give them a moment to arrive; whether they join it or come after it
	// and find the cached entry, one load is the right count.
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := cs.loads.Load(); n != 1 {
		t.Errorf("%d concurrent gets caused %d loads, want 1", len(results), n)
	}
}

// fleetStore knows every client id: an agent with no credentials.
type fleetStore struct{}

func (fleetStore) GetAgentByClientID(_ context.Context, id string) (*store.Agent, error) {
	return &store.Agent{ID: id, ClientID: id, Status: store.StatusActive}, nil
}
func (fleetStore) ListCredentials(context.Context, string) ([]store.Credential, error) {
	return nil, nil
}
func (fleetStore) ListAttestations(context.Context, string, int) ([]store.AttestationResult, error) {
	return nil, nil
}

// TestClientCacheSweepsExpiredEntries: requests from ever new agents do not grow the
// cache without bound; what it keeps is the agents seen within the last ttl.
func TestClientCacheSweepsExpiredEntries(t *testing.T) {
	clock := newClock()
	c := newClientCache(fleetStore{}, cacheOptions{ttl: 5 * time.Second, max: 100 * sweepEvery, now: clock.Now})
	for batch := range 10 {
		for i := range sweepEvery {
			if _, err := c.get(t.Context(), "agt_"+itoa(int64(batch*sweepEvery+i))); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(6 * time.Second) // every entry of this batch has expired
	}
	if n := c.size(); n > 2*sweepEvery {
		t.Fatalf("cache holds %d entries after 10 batches of %d agents, each expired; want at most %d", n, sweepEvery, 2*sweepEvery)
	}
	// A live entry survives a sweep.
	if _, err := c.get(t.Context(), "agt_live"); err != nil {
		t.Fatal(err)
	}
	for i := range sweepEvery {
		if _, err := c.get(t.Context(), "agt_more_"+itoa(int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.RLock()
	_, ok := c.entries["agt_live"]
	c.mu.RUnlock()
	if !ok {
		t.Fatal("a sweep dropped an entry that had not expired")
	}
}

// TestClientCacheBounded: however many agents are active at once, the cache holds at
// most max of them.
func TestClientCacheBounded(t *testing.T) {
	clock := newClock()
	c := newClientCache(fleetStore{}, cacheOptions{ttl: time.Hour, max: 100, now: clock.Now})
	for i := range 1000 {
		if _, err := c.get(t.Context(), "agt_"+itoa(int64(i))); err != nil {
			t.Fatal(err)
		}
		if n := c.size(); n > 100 {
			t.Fatalf("cache holds %d entries, max is 100", n)
		}
	}
	if n := c.size(); n < 50 {
		t.Errorf("cache holds %d entries after 1,000 agents; eviction drops far too much", n)
	}
}

// TestClientCacheLiveTTL: while the change feed is live, entries are served for the
// long lifetime; once it is lost, for the short one again; flush empties the cache.
func TestClientCacheLiveTTL(t *testing.T) {
	clock := newClock()
	var live atomic.Bool
	cs := &countingStore{clientStore: fleetStore{}}
	c := newClientCache(cs, cacheOptions{ttl: 5 * time.Second, liveTTL: 10 * time.Minute, max: 100, live: live.Load, now: clock.Now})
	get := func() {
		t.Helper()
		if _, err := c.get(t.Context(), "agt_1"); err != nil {
			t.Fatal(err)
		}
	}
	live.Store(true)
	get()
	clock.Advance(time.Minute)
	get()
	if n := cs.loads.Load(); n != 1 {
		t.Fatalf("live feed: %d loads after a minute, want 1", n)
	}
	live.Store(false)
	get()
	if n := cs.loads.Load(); n != 2 {
		t.Fatalf("feed lost: an entry older than the short TTL was served (%d loads, want 2)", n)
	}
	c.flush()
	if c.size() != 0 {
		t.Fatal("flush left entries")
	}
	get()
	if n := cs.loads.Load(); n != 3 {
		t.Fatalf("after flush: %d loads, want 3", n)
	}
}
