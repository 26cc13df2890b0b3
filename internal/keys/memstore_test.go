package keys

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// memStore is an in-memory store.SigningKeys that follows the store contract (copies
// in and out, ErrConflict/ErrNotFound, compare-and-swap updates, UTC times, ordering
// by CreatedAt then kid) and can be told to fail or "crash" at a given write.
type memStore struct {
	mu   sync.Mutex
	keys map[string]store.SigningKey

	// beforeCreate and beforeUpdate, if set, run before a write is applied, with the
	// value about to be written; an error aborts the write, a panic simulates a crash.
	beforeCreate func(k store.SigningKey) error
	beforeUpdate func(k store.SigningKey) error
}

var _ store.SigningKeys = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{keys: map[string]store.SigningKey{}} }

func copyKey(k store.SigningKey) store.SigningKey {
	k.PublicJWK = bytes.Clone(k.PublicJWK)
	k.CreatedAt = k.CreatedAt.UTC()
	for _, p := range []**time.Time{&k.ActivatedAt, &k.RetiredAt, &k.NotAfter} {
		if *p != nil {
			t := (**p).UTC()
			*p = &t
		}
	}
	return k
}

// Writes hold the lock for the whole operation, hooks and closure included, as the
// real store holds the row lock; a panicking hook releases it through the defer.

func (s *memStore) CreateSigningKey(ctx context.Context, k *store.SigningKey) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if k.KID == "" || len(k.PublicJWK) == 0 {
		return fmt.Errorf("memstore: kid and public JWK are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.beforeCreate != nil {
		if err := s.beforeCreate(copyKey(*k)); err != nil {
			return err
		}
	}
	if _, ok := s.keys[k.KID]; ok {
		return fmt.Errorf("memstore: kid %s: %w", k.KID, store.ErrConflict)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = time.Now()
	}
	*k = copyKey(*k)
	s.keys[k.KID] = copyKey(*k)
	return nil
}

func (s *memStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.SigningKey, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, copyKey(k))
	}
	slices.SortFunc(out, func(a, b store.SigningKey) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.KID, b.KID))
	})
	return out, nil
}

func (s *memStore) UpdateSigningKey(ctx context.Context, kid string, fn func(k *store.SigningKey) error) (*store.SigningKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.keys[kid]
	if !ok {
		return nil, fmt.Errorf("memstore: kid %s: %w", kid, store.ErrNotFound)
	}
	next := copyKey(cur)
	if err := fn(&next); err != nil {
		return nil, err
	}
	next.KID, next.CreatedAt = cur.KID, cur.CreatedAt
	next = copyKey(next)
	if s.beforeUpdate != nil {
		if err := s.beforeUpdate(copyKey(next)); err != nil {
			return nil, err
		}
	}
	s.keys[kid] = next
	out := copyKey(next)
	return &out, nil
}

// put stores k as is, bypassing every check: for planting corrupt records.
func (s *memStore) put(k store.SigningKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[k.KID] = copyKey(k)
}

func (s *memStore) get(kid string) (store.SigningKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[kid]
	return copyKey(k), ok
}

func (s *memStore) setHooks(create, update func(k store.SigningKey) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beforeCreate, s.beforeUpdate = create, update
}

// count returns how many keys of alg are in each state.
func (s *memStore) count(alg string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[string]int{}
	for _, k := range s.keys {
		if k.Alg == alg {
			n[k.State]++
		}
	}
	return n
}
