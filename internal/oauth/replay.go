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
//
// Entries are 128-bit keyed hashes of (client id, jti) with the expiry in nanoseconds,
// about 40 bytes each: at 6,000 tokens/s and 5-minute assertions the cache holds ~1.8M
// entries, which as strings would cost several hundred MiB. A collision (odds ~2⁻⁸⁰ at
// that size) would refuse one honest assertion, never accept a replay.
type replayCache struct {
	started     time.Time
	seed, seed2 maphash.Seed
	shards      [64]replayShard
}

type replayShard struct {
	mu   sync.Mutex
	seen map[[2]uint64]int64 // hash of key → expiry (Unix nanoseconds)
	// sweepAt is when expired entries are next dropped from this shard.
	sweepAt time.Time
}

func newReplayCache(now time.Time) *replayCache {
	// iat has second precision: assertions from the start's own second are accepted.
	c := &replayCache{started: now.Truncate(time.Second), seed: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].seen = make(map[[2]uint64]int64)
	}
	return c
}

// Seen records key (client id + jti) until exp and reports whether it was already
// recorded and unexpired, or was issued (iat) before the cache started.
func (c *replayCache) Seen(key string, iat, exp, now time.Time) bool {
	if iat.Before(c.started) {
		return true
	}
	h1 := maphash.String(c.seed, key)
	k := [2]uint64{h1, maphash.String(c.seed2, key)}
	t := now.UnixNano()
	s := &c.shards[h1%uint64(len(c.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.After(s.sweepAt) {
		for k, e := range s.seen {
			if t > e {
				delete(s.seen, k)
			}
		}
		s.sweepAt = now.Add(30 * time.Second)
	}
	if e, ok := s.seen[k]; ok && t <= e {
		return true
	}
	s.seen[k] = exp.UnixNano()
	return false
}
