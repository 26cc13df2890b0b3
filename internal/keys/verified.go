package keys

import (
	"sync"
)

// maxVerified bounds the cache of verified tokens: about 1 KiB each (a token's payload
// and the map entry), so at most ~16 MiB.
const maxVerified = 16384

// verifiedCache remembers tokens whose signature Verify has checked. A resource server
// introspects the same token on every call the agent makes with it, and the ES256 check
// is most of what an introspection costs; a byte-identical token needs it once.
//
// Entries are keyed by the SHA-256 of the whole compact token, so only the exact bytes
// that verified can hit. A hit still looks up the signing key by kid in the current key
// set, so a key that was removed or has expired stops its cached tokens at once. Expired
// tokens may stay cached until evicted: Verify checks only the signature, and callers
// check exp on every call.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[[32]byte]verifiedToken
}

type verifiedToken struct {
	kid, typ string
	// payload is shared by every hit: callers must not modify what Verify returns.
	payload []byte
}

func (c *verifiedCache) get(h [32]byte) (verifiedToken, bool) {
	c.mu.RLock()
	v, ok := c.m[h]
	c.mu.RUnlock()
	return v, ok
}

func (c *verifiedCache) put(h [32]byte, v verifiedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[32]byte]verifiedToken)
	}
	if len(c.m) >= maxVerified {
		// Drop an eighth, in map order (effectively random): cheaper than tracking
		// recency on every hit, and a dropped token costs one signature check.
		n := maxVerified / 8
		for k := range c.m {
			delete(c.m, k)
			if n--; n == 0 {
				break
			}
		}
	}
	c.m[h] = v
}

func (c *verifiedCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
