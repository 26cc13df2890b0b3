package keys

import (
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/secrets/local"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// TestLifecycleOnStores runs the key lifecycle — first start, restart, rotation,
// expiry of the retired key, restart after — on the in-memory fake and on the real
// gorm store (SQLite), so the fake cannot drift from what production does.
func TestLifecycleOnStores(t *testing.T) {
	stores := map[string]func(t *testing.T) store.SigningKeys{
		"memory": func(*testing.T) store.SigningKeys { return newMemStore() },
		"sqlite": func(t *testing.T) store.SigningKeys { return storetest.OpenSQLite(t) },
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			key := make([]byte, local.KeySize)
			rand.Read(key)
			sb, err := local.New(t.TempDir(), key)
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Close()
			clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
			const ttl = 10 * time.Minute
			start := func() *Manager {
				t.Helper()
				m := NewManager(st, sb, nil, Options{MaxTokenTTL: ttl, Now: clock.Now})
				if err := m.Init(t.Context()); err != nil {
					t.Fatalf("Init: %v", err)
				}
				return m
			}

			m := start()
			old := activeKID(t, m, ES256)
			tok := sign(t, m, ES256, "at+jwt", claims)
			if m2 := start(); activeKID(t, m2, ES256) != old {
				t.Fatal("restart changed the active key")
			}
			if recs, _ := st.ListSigningKeys(t.Context()); len(recs) != 2 {
				t.Fatalf("%d keys after two starts, want 2", len(recs))
			}

			clock.Advance(time.Hour)
			if err := m.Rotate(t.Context(), ES256); err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			cur := activeKID(t, m, ES256)
			m2 := start()
			if activeKID(t, m2, ES256) != cur {
				t.Error("restart after rotation does not sign with the new key")
			}
			mustVerify(t, m2, tok)
			if !slices.Contains(jwksKIDs(t, m2), old) {
				t.Error("retired key not published after restart")
			}
			var retired store.SigningKey
			recs, _ := st.ListSigningKeys(t.Context())
			for _, r := range recs {
				if r.KID == old {
					retired = r
				}
			}
			if retired.State != store.KeyRetired || retired.NotAfter == nil || !retired.NotAfter.Equal(clock.Now().Add(ttl)) {
				t.Errorf("retired record: %s, NotAfter %v", retired.State, retired.NotAfter)
			}

			clock.Advance(ttl)
			m3 := start()
			wantInvalid(t, m3, tok, "a token of an expired key")
			if kids := jwksKIDs(t, m3); slices.Contains(kids, old) || len(kids) != 2 {
				t.Errorf("JWKS after NotAfter = %v", kids)
			}
		})
	}
}
