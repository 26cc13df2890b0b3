package adminauth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

func hasher(t *testing.T, pepper string) *lifecycle.SecretHasher {
	t.Helper()
	h, err := lifecycle.NewSecretHasher([]byte(pepper))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const pepper = "pepper-for-tests-0123456789abcdef"

func TestBootstrapGeneratesOnce(t *testing.T) {
	ctx := context.Background()
	st := storetest.OpenSQLite(t)
	h := hasher(t, pepper)

	first, tok, err := Bootstrap(ctx, st, h, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != len(TokenPrefix)+43 {
		t.Fatalf("generated token %q; want %s + 43 base64url characters", tok, TokenPrefix)
	}
	if !first.CheckAdminToken(ctx, tok) {
		t.Error("the generated token is refused")
	}

	// Only the hash is stored.
	stored, err := st.GetSetting(ctx, settingKey)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Equal(tok, stored) || strings.Contains(string(stored), tok) {
		t.Errorf("stored %x is not the token's keyed hash", stored)
	}

	// A restart finds the hash: no new token, the first one still works.
	second, tok2, err := Bootstrap(ctx, st, h, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok2 != "" {
		t.Errorf("second Bootstrap generated %q; the token must be shown only once", tok2)
	}
	if !second.CheckAdminToken(ctx, tok) {
		t.Error("after a restart the first token is refused")
	}

	// Under another pepper (a lost secrets backend) the stored hash matches nothing.
	third, _, err := Bootstrap(ctx, st, hasher(t, strings.Repeat("z", 32)), "")
	if err != nil {
		t.Fatal(err)
	}
	if third.CheckAdminToken(ctx, tok) {
		t.Error("the token verifies under another pepper")
	}
}

func TestBootstrapConcurrentReplicas(t *testing.T) {
	ctx := context.Background()
	st := storetest.OpenSQLite(t)
	h := hasher(t, pepper)
	const replicas = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		auths []*Authenticator
		toks  []string
	)
	for range replicas {
		wg.Go(func() {
			a, tok, err := Bootstrap(ctx, st, h, "")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			auths = append(auths, a)
			if tok != "" {
				toks = append(toks, tok)
			}
		})
	}
	wg.Wait()
	if len(toks) != 1 {
		t.Fatalf("%d replicas printed a token, want exactly 1", len(toks))
	}
	for i, a := range auths {
		if !a.CheckAdminToken(ctx, toks[0]) {
			t.Errorf("replica %d refuses the one generated token", i)
		}
	}
}

func TestBootstrapConfigured(t *testing.T) {
	ctx := context.Background()
	h := hasher(t, pepper)
	configured := "configured-admin-token-0123456789abcdef"

	tests := []struct {
		name       string
		configured string
		wantErr    bool
	}{
		{"32 characters", strings.Repeat("c", 32), false},
		{"long", configured, false},
		{"31 characters", strings.Repeat("c", 31), true},
		{"short", "s3cr3t!", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := storetest.OpenSQLite(t)
			a, tok, err := Bootstrap(ctx, st, h, tt.configured)
			if tt.wantErr {
				if err == nil || a != nil {
					t.Fatalf("Bootstrap(%d characters) = %v, %v; want an error", len(tt.configured), a, err)
				}
				if strings.Contains(err.Error(), tt.configured) {
					t.Errorf("error %q quotes the token", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok != "" {
				t.Errorf("Bootstrap with a configured token generated %q", tok)
			}
			if !a.CheckAdminToken(ctx, tt.configured) {
				t.Error("the configured token is refused")
			}
			// Nothing is written: the configured token is not persisted anywhere.
			if _, err := st.GetSetting(ctx, settingKey); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetSetting after a configured bootstrap = %v, want ErrNotFound", err)
			}
		})
	}

	t.Run("wins over a stored token", func(t *testing.T) {
		st := storetest.OpenSQLite(t)
		_, generated, err := Bootstrap(ctx, st, h, "")
		if err != nil || generated == "" {
			t.Fatalf("first bootstrap: %q, %v", generated, err)
		}
		a, _, err := Bootstrap(ctx, st, h, configured)
		if err != nil {
			t.Fatal(err)
		}
		if !a.CheckAdminToken(ctx, configured) {
			t.Error("the configured token is refused")
		}
		if a.CheckAdminToken(ctx, generated) {
			t.Error("the stored (generated) token still works although a token is configured")
		}
	})
}

func TestCheckAdminToken(t *testing.T) {
	ctx := context.Background()
	h := hasher(t, pepper)
	good := "configured-admin-token-0123456789abcdef"
	a, _, err := Bootstrap(ctx, storetest.OpenSQLite(t), h, good)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		want  bool
	}{
		{"right", good, true},
		{"empty", "", false},
		{"wrong", "configured-admin-token-0123456789abcdeX", false},
		{"prefix", good[:32], false},
		{"longer", good + "x", false},
		{"with space", " " + good, false},
		{"upper case", strings.ToUpper(good), false},
		{"hash of the token", string(h.Hash(good)), false},
	}
	for _, tt := range tests {
		if got := a.CheckAdminToken(ctx, tt.token); got != tt.want {
			t.Errorf("%s: CheckAdminToken = %v, want %v", tt.name, got, tt.want)
		}
	}

	// Empty is refused even by an authenticator whose hash is that of "".
	empty := &Authenticator{hasher: h, hash: h.Hash("")}
	if empty.CheckAdminToken(ctx, "") {
		t.Error("an empty token was accepted")
	}
}
