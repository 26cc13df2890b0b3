package oauth

import (
	"context"
	"sync"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// How the provider's caches stay coherent across replicas.
//
// The token endpoint answers from the client cache (an agent, its credentials and its
// latest verdict), and introspection needs the agent's status and the revoked tokens.
// Changes made through this process invalidate its cache at once (Invalidate). Changes
// made by another replica reach it in one of two ways:
//
//   - With a live change feed (PostgreSQL: triggers NOTIFY each committed write and every
//     replica LISTENs; see gormstore.ChangeFeed), each write invalidates the entry on every
//     replica within milliseconds. Cached clients then live up to ClientCacheLiveTTL (a
//     backstop only), and introspection answers from memory: the agent from the client
//     cache, revocations from a set loaded once and kept current by the feed.
//   - Without one (SQLite is a single process; PostgreSQL while the LISTEN connection is
//     down), cached clients live ClientCacheTTL (5 s) and introspection reads the agent
//     and the revocation from the database on every call.
//
// Whenever the feed (re)connects, notifications sent while it was down are lost: the
// client cache is emptied and the revocations are read again before the provider trusts
// its memory. A revocation is never undone, so the set only grows until its tokens expire.

// Live implements store.ChangeHandler.
func (p *Provider) Live(live bool) {
	p.liveMu.Lock()
	defer p.liveMu.Unlock()
	p.feedUp = live
	p.live.Store(false)
	if !live {
		p.log.Warn("change feed lost: caches fall back to short lifetimes and introspection to database reads")
		return
	}
	p.clients.flush()
	p.loadRevocationsLocked()
}

// Changed implements store.ChangeHandler.
func (p *Provider) Changed(c store.Change) {
	switch c.Kind {
	case store.ChangeAgent:
		// Agents' client ids are their ids unless the row said otherwise.
		p.clients.invalidate(c.AgentID)
		if c.ClientID != "" && c.ClientID != c.AgentID {
			p.clients.invalidate(c.ClientID)
		}
	case store.ChangeRevoked:
		p.revoked.add(c.JTI, c.ExpiresAt)
	}
}

// loadRevocationsLocked reads every unexpired revocation; on success the provider
// trusts its memory. p.liveMu must be held.
func (p *Provider) loadRevocationsLocked() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := p.deps.Store.ListRevocations(ctx, p.now())
	if err != nil {
		p.log.Error("load revocations: introspection reads the database until this succeeds", "err", err)
		return
	}
	for _, r := range list {
		p.revoked.add(r.JTI, r.ExpiresAt)
	}
	p.live.Store(true)
	p.log.Info("change feed live: caches are invalidated by the feed", "revocations", len(list))
}

// Run drops expired revocations from memory and, while the feed is up but the
// revocations could not be read, retries reading them. It returns when ctx ends.
func (p *Provider) Run(ctx context.Context) error {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.revoked.purge(p.now())
			p.liveMu.Lock()
			if p.feedUp && !p.live.Load() {
				p.loadRevocationsLocked()
			}
			p.liveMu.Unlock()
		}
	}
}

// revokedSet holds the jti of every revoked token that has not expired.
type revokedSet struct {
	mu sync.RWMutex
	m  map[string]time.Time
}

func (s *revokedSet) add(jti string, exp time.Time) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string]time.Time)
	}
	s.m[jti] = exp
	s.mu.Unlock()
}

func (s *revokedSet) has(jti string) bool {
	s.mu.RLock()
	_, ok := s.m[jti]
	s.mu.RUnlock()
	return ok
}

// purge drops revocations of tokens that expired before now: those tokens are
// inactive anyway.
func (s *revokedSet) purge(now time.Time) {
	s.mu.Lock()
	for jti, exp := range s.m {
		if exp.Before(now) {
			delete(s.m, jti)
		}
	}
	s.mu.Unlock()
}

func (s *revokedSet) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}
