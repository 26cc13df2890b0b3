package gormstore_test

import (
	"fmt"
	"testing"

	"github.com/lanyardhq/lanyard/internal/store"
)

func benchAgent(b *testing.B, s store.Store) {
	b.Helper()
	a := &store.Agent{ID: "agt_1", ClientID: "cli_1", Name: "bench", Namespace: "ns", Status: store.StatusActive,
		AllowedScopes: store.StringList{"a", "b"}}
	c := &store.Credential{ID: "crd_1", Type: store.CredentialClientSecret, State: store.CredentialActive, SecretHash: make([]byte, 32)}
	if err := s.CreateAgent(b.Context(), a, c); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGetAgentByClientID measures the token endpoint's lookup (uncached).
func BenchmarkGetAgentByClientID(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.name, func(b *testing.B) {
			s := d.open(b)
			benchAgent(b, s)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.GetAgentByClientID(b.Context(), "cli_1"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkUpdateAgent measures contended compare-and-swap updates of one agent.
func BenchmarkUpdateAgent(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.name, func(b *testing.B) {
			s := d.open(b)
			benchAgent(b, s)
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.UpdateAgent(b.Context(), "agt_1", func(a *store.Agent) error { a.Purpose = "x"; return nil }); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAppendAudit measures appending batches of events; ns/op is per batch.
func BenchmarkAppendAudit(b *testing.B) {
	for _, d := range dialects {
		for _, n := range []int{1, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", d.name, n), func(b *testing.B) {
				s := d.open(b)
				for b.Loop() {
					err := s.AppendAudit(b.Context(), func(h store.AuditHead) ([]store.AuditEvent, error) {
						evs := make([]store.AuditEvent, n)
						prev := h.Hash
						for i := range evs {
							hash := fmt.Appendf(nil, "hash-%d", h.Seq+1+int64(i))
							evs[i] = store.AuditEvent{Seq: h.Seq + 1 + int64(i), ID: "evt", Type: "token.issued",
								AgentID: "agt_1", Outcome: "success", Data: []byte(`{"k":"v"}`), PrevHash: prev, Hash: hash}
							prev = hash
						}
						return evs, nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
