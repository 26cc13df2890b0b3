package vault_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/lanyardhq/lanyard/internal/secrets/vault"
	"github.com/lanyardhq/lanyard/internal/secrets/vault/vaulttest"
)

// The figures in docs/benchmarks.md ("Vault") come from these, against the dev server
// (in-memory storage, same machine):
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/secrets/vault

// BenchmarkPut is the cost of writing a credential (a registration or a rotation).
func BenchmarkPut(b *testing.B) {
	srv := vaulttest.Require(b)
	v, err := vault.New(b.Context(), vault.Config{Address: srv.Addr, Token: srv.RootToken})
	if err != nil {
		b.Fatal(err)
	}
	data := map[string]string{"client_secret": strings.Repeat("x", 47), "client_id": "agt_x", "credential_id": "crd_x", "type": "client_secret"}
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Put(b.Context(), "lanyard/bench/put", data); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	v.Destroy(b.Context(), "lanyard/bench/put")
}

// BenchmarkGet is the cost of reading one version (a signing key at start or reload).
func BenchmarkGet(b *testing.B) {
	srv := vaulttest.Require(b)
	v, err := vault.New(b.Context(), vault.Config{Address: srv.Addr, Token: srv.RootToken})
	if err != nil {
		b.Fatal(err)
	}
	ver, err := v.Put(b.Context(), "lanyard/bench/get", map[string]string{"k": "v"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Get(b.Context(), "lanyard/bench/get", ver); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransitSignES256 is what every token would cost if Lanyard signed with Vault
// Transit instead of in-memory keys (not implemented: see docs/benchmarks.md), run in
// parallel as the token endpoint would.
func BenchmarkTransitSignES256(b *testing.B) {
	srv := vaulttest.Require(b)
	c := srv.Client()
	if err := c.Sys().Mount("transit", &api.MountInput{Type: "transit"}); err != nil && !strings.Contains(err.Error(), "already in use") {
		b.Fatal(err)
	}
	if _, err := c.Logical().Write("transit/keys/lanyard-es256", map[string]any{"type": "ecdsa-p256"}); err != nil {
		b.Fatal(err)
	}
	input := base64.StdEncoding.EncodeToString([]byte(`eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ3RfeCJ9`))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s, err := c.Logical().Write("transit/sign/lanyard-es256/sha2-256", map[string]any{"input": input, "marshaling_algorithm": "jws"})
			if err != nil || s == nil || s.Data["signature"] == nil {
				b.Error(err)
				return
			}
		}
	})
}
