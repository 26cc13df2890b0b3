package oauth

import (
	"hash/maphash"
	"sync"
	"time"
)

// replayCache remembers client assertion jtis until their assertion expires, so that a
// captured assertion cannot be replayed (RFC 7523 §3, item 7).
//
// It lives in process memory: with one server it is exact. Because a restart empties
// it, the cache refuses every assertion issued before it started (see Seen), which
// closes the restart window; an agent simply signs a fresh assertion. Several replicas
// need a shared store (the PostgreSQL scale-out work), which this type's small surface is
// ready to take.
type replayCache struct {
	started time.Time
	seed    maphash.Seed
	shards  [64]replayShard
}

type replayShard struct {
	mu   sync.Mutex
	seen map[string]time.Time // key → expiry
	// sweepAt is when expired entries are next dropped from this shard.
	sweepAt time.Time
}

func newReplayCache(now time.Time) *replayCache {
	// iat has second precision: assertions from the start's own second are accepted.
	c := &replayCache{started: now.Truncate(time.Second), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].seen = make(map[string]time.Time)
	}
	return c
}

// Seen records key (client id + jti) until exp and reports whether it was already
// recorded and unexpired, or was issued (iat) before the cache started.
func (c *replayCache) Seen(key string, iat, exp, now time.Time) bool {
	if iat.Before(c.started) {
		return true
	}
	s := &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.After(s.sweepAt) {
		for k, e := range s.seen {
			if now.After(e) {
				delete(s.seen, k)
			}
		}
		s.sweepAt = now.Add(30 * time.Second)
	}
	if e, ok := s.seen[key]; ok && !now.After(e) {
		return true
	}
	s.seen[key] = exp
	return false
}
