package web

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// BenchmarkPages renders UI pages over 5,000 agents and 20,000 audit events on
// SQLite, signed in as admin (figures in docs/benchmarks.md).
//
//	go test -run '^$' -bench BenchmarkPages -benchtime 50x ./internal/web/
func BenchmarkPages(b *testing.B) {
	f := newFixture(b, "http://localhost:8080")
	st := f.h.d.Store.(store.Store)
	ctx := b.Context()
	now := time.Now().UTC()
	for i := range 5000 {
		id := fmt.Sprintf("agt_%026d", i)
		a := &store.Agent{ID: id, ClientID: id, Name: fmt.Sprintf("agent-%05d", i), Namespace: fmt.Sprintf("ns-%02d", i%40),
			Owner: fmt.Sprintf("team-%d", i%25), RiskLevel: []string{"low", "medium", "high", "critical"}[i%4],
			Status: []string{store.StatusActive, store.StatusActive, store.StatusSuspended}[i%3], CredentialType: store.CredentialClientSecret,
			TokenAlg: "ES256", Generation: 1, CreatedAt: now, UpdatedAt: now}
		if err := st.CreateAgent(ctx, a, &store.Credential{ID: "crd_" + id, Type: store.CredentialClientSecret, State: store.CredentialActive, SecretHash: []byte{1}, CreatedAt: now}); err != nil {
			b.Fatal(err)
		}
	}
	seq := int64(0)
	err := st.AppendAudit(ctx, func(head store.AuditHead) ([]store.AuditEvent, error) {
		var evs []store.AuditEvent
		prev := head.Hash
		for i := range 20000 {
			seq++
			e := store.AuditEvent{Seq: seq, ID: fmt.Sprint(seq), Time: now.Add(-time.Duration(i) * 150 * time.Millisecond).Truncate(time.Microsecond),
				Type: []string{"token.issued", "token.issued", "token.refused"}[i%3], AgentID: fmt.Sprintf("agt_%026d", i%5000),
				Outcome: "success", PrevHash: prev, Hash: []byte(fmt.Sprint(seq))}
			prev = e.Hash
			evs = append(evs, e)
		}
		return evs, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	sc, _ := f.signIn(b)
	for _, page := range []string{"/ui/agents", "/ui/agents?namespace=ns-07&status=active&risk=high", "/ui/agents?q=agent-049", "/ui/agents?cursor=agt_00000000000000000000004000", "/ui/"} {
		b.Run(page, func(b *testing.B) {
			for b.Loop() {
				if resp := f.do(b, "GET", page, nil, []*http.Cookie{sc}, nil); resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d", page, resp.StatusCode)
				}
			}
		})
	}
}
