package oauth

import (
	"fmt"
	"hash/maphash"
	"testing"
	"time"
)

func TestReplayCache(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	exp := start.Add(time.Minute)
	t.Run("same key twice", func(t *testing.T) {
		c := newReplayCache(start)
		if c.Seen("agt_a\x00j1", start, exp, start) {
			t.Fatal("first use reported as seen")
		}
		if !c.Seen("agt_a\x00j1", start, exp, start.Add(time.Second)) {
			t.Error("second use of the same client and jti not reported")
		}
		if !c.Seen("agt_a\x00j1", start, exp, exp) {
			t.Error("replay at the exact expiry not reported")
		}
	})

	t.Run("same jti, different client", func(t *testing.T) {
		c := newReplayCache(start)
		c.Seen("agt_a\x00j1", start, exp, start)
		if c.Seen("agt_b\x00j1", start, exp, start) {
			t.Error("another client's jti counted as a replay")
		}
	})

	t.Run("expired entry forgotten", func(t *testing.T) {
		c := newReplayCache(start)
		c.Seen("agt_a\x00j1", start, exp, start)
		// Past its expiry the assertion itself is refused as expired; the cache may
		// forget it, and must not report it even before a sweep ran.
		if c.Seen("agt_a\x00j1", start, exp, exp.Add(time.Nanosecond)) {
			t.Error("an entry past its expiry was still reported")
		}
	})

	t.Run("iat before start", func(t *testing.T) {
		c := newReplayCache(start)
		if !c.Seen("agt_a\x00j1", start.Add(-time.Second), exp, start) {
			t.Error("an assertion issued before the cache started was accepted: a restart would open a replay window")
		}
		// Refused, not recorded: the cache does not grow for them.
		if n := c.size(); n != 0 {
			t.Errorf("cache holds %d entries after refusing an old assertion", n)
		}
		if c.Seen("agt_a\x00j2", start, exp, start) {
			t.Error("an assertion issued at the start was refused")
		}
	})

	t.Run("sweep drops expired entries", func(t *testing.T) {
		c := newReplayCache(start)
		// Fill every shard with entries that expire at exp.
		for i := range 1000 {
			c.Seen(fmt.Sprintf("agt_a\x00old%d", i), start, exp, start)
		}
		if n := c.size(); n != 1000 {
			t.Fatalf("cache holds %d entries, want 1000", n)
		}
		// Long after: one call per shard triggers that shard's sweep.
		later := exp.Add(time.Hour)
		keys := keysPerShard(c)
		for _, k := range keys {
			c.Seen(k, later, later.Add(time.Minute), later)
		}
		if n := c.size(); n != len(keys) {
			t.Errorf("after the sweep the cache holds %d entries, want only the %d fresh ones", n, len(keys))
		}
	})

	t.Run("sweep keeps live entries", func(t *testing.T) {
		c := newReplayCache(start)
		long := start.Add(10 * time.Minute)
		c.Seen("agt_a\x00live", start, long, start)
		now := start.Add(5 * time.Minute) // past the 30s sweep interval
		for _, k := range keysPerShard(c) {
			c.Seen(k, now, now.Add(time.Minute), now)
		}
		if !c.Seen("agt_a\x00live", start, long, now) {
			t.Error("a sweep dropped an unexpired entry: it could be replayed")
		}
	})
}

// size counts the entries of every shard.
func (c *replayCache) size() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].seen)
		c.shards[i].mu.Unlock()
	}
	return n
}

// keysPerShard returns one fresh key landing in each shard of c.
func keysPerShard(c *replayCache) []string {
	found := make([]string, len(c.shards))
	left := len(c.shards)
	for i := 0; left > 0; i++ {
		k := fmt.Sprintf("agt_z\x00sweep%d", i)
		s := maphash.String(c.seed, k) % uint64(len(c.shards))
		if found[s] == "" {
			found[s] = k
			left--
		}
	}
	return found
}
