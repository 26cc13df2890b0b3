package lifecycle_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
)

func TestSecretHasher(t *testing.T) {
	h, err := lifecycle.NewSecretHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "lys_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	hash := h.Hash(secret)

	// Hash is exactly HMAC-SHA-256 keyed with the pepper.
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(secret))
	if want := m.Sum(nil); !bytes.Equal(hash, want) {
		t.Errorf("Hash = %x, want HMAC-SHA-256(pepper, secret) = %x", hash, want)
	}
	if !bytes.Equal(h.Hash(secret), hash) {
		t.Error("Hash is not deterministic")
	}

	tests := []struct {
		name   string
		secret string
		hash   []byte
		want   bool
	}{
		{"same secret", secret, hash, true},
		{"other secret", secret + "x", hash, false},
		{"empty secret", "", hash, false},
		{"prefix of the secret", secret[:10], hash, false},
		{"truncated hash", secret, hash[:16], false},
		{"empty hash", secret, nil, false},
		{"the secret itself as hash", secret, []byte(secret), false},
	}
	for _, tt := range tests {
		if got := h.Equal(tt.secret, tt.hash); got != tt.want {
			t.Errorf("%s: Equal = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSecretHasherPepper(t *testing.T) {
	other := bytes.Repeat([]byte{7}, 32)
	h1, err := lifecycle.NewSecretHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := lifecycle.NewSecretHasher(other)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(h1.Hash("s"), h2.Hash("s")) {
		t.Error("different peppers give the same hash: a stolen database would be testable offline")
	}
	if h2.Equal("s", h1.Hash("s")) {
		t.Error("a hash made under one pepper verifies under another")
	}

	// The hasher keeps its own copy: the caller may wipe its pepper buffer.
	buf := bytes.Clone(pepper)
	h3, err := lifecycle.NewSecretHasher(buf)
	if err != nil {
		t.Fatal(err)
	}
	before := h3.Hash("s")
	clear(buf)
	if !bytes.Equal(h3.Hash("s"), before) {
		t.Error("wiping the caller's pepper changed the hasher")
	}

	for _, n := range []int{0, 16, 31} {
		if _, err := lifecycle.NewSecretHasher(make([]byte, n)); err == nil {
			t.Errorf("NewSecretHasher accepted a %d-byte pepper", n)
		}
	}
}

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s, err := lifecycle.NewSecret("pfx_")
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(s, "pfx_")
		if !ok {
			t.Fatalf("NewSecret = %q, want prefix pfx_", s)
		}
		raw, err := base64.RawURLEncoding.DecodeString(body)
		if err != nil || len(raw) != 32 {
			t.Fatalf("NewSecret body %q: %d bytes, %v; want 32 bytes of base64url", body, len(raw), err)
		}
		if seen[s] {
			t.Fatalf("NewSecret repeated %q", s)
		}
		seen[s] = true
	}
}
