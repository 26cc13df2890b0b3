package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// UIStore is a store with the web UI's capabilities.
type UIStore interface {
	store.Store
	store.UISessions
	store.Counter
}

// RunUI runs the conformance suite of the web UI's store capabilities: sessions, the
// fleet list's extra filters and the dashboard's counters.
func RunUI(t *testing.T, open func(t *testing.T) UIStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s UIStore)
	}{
		{"UISession/Lifecycle", testUISessions},
		{"UISession/Purge", testUISessionPurge},
		{"Agent/ListSearch", testAgentListSearch},
		{"Counter/Agents", testCountAgentsBy},
		{"Counter/Audit", testCountAudit},
		{"Counter/AttestedAndStale", testCountAttestedStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func testUISessions(t *testing.T, s UIStore) {
	id := []byte("0123456789abcdef0123456789abcdef")
	sess := &store.UISession{IDHash: id, Kind: store.UISessionUser, Data: []byte(`{"a":1}`),
		CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateUISession(ctx(t), sess); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUISession(ctx(t), sess); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate CreateUISession = %v, want ErrConflict", err)
	}
	got, err := s.GetUISession(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, "session", got, sess)
	checkUTC(t, "session", got)
	if err := s.TouchUISession(ctx(t), id, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.GetUISession(ctx(t), id); !got.LastSeenAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("LastSeenAt = %v after touch", got.LastSeenAt)
	}
	if err := s.DeleteUISession(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUISession(ctx(t), id); err != nil {
		t.Errorf("deleting an absent session: %v", err)
	}
	if _, err := s.GetUISession(ctx(t), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUISession after delete = %v, want ErrNotFound", err)
	}
	if err := s.TouchUISession(ctx(t), id, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TouchUISession of absent = %v, want ErrNotFound", err)
	}
}

func testUISessionPurge(t *testing.T, s UIStore) {
	mk := func(name string, lastSeen, expires time.Time) {
		h := []byte(fmt.Sprintf("%-32s", name))
		if err := s.CreateUISession(ctx(t), &store.UISession{IDHash: h, Kind: store.UISessionUser, Data: []byte("{}"),
			CreatedAt: t0, LastSeenAt: lastSeen, ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	mk("live", t0.Add(50*time.Minute), t0.Add(2*time.Hour))
	mk("expired", t0.Add(50*time.Minute), t0.Add(30*time.Minute))
	mk("idle", t0, t0.Add(2*time.Hour))
	n, err := s.PurgeUISessions(ctx(t), t0.Add(time.Hour), t0.Add(30*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("PurgeUISessions = %d, %v; want 2", n, err)
	}
	if _, err := s.GetUISession(ctx(t), []byte(fmt.Sprintf("%-32s", "live"))); err != nil {
		t.Errorf("the live session was purged: %v", err)
	}
}

func testAgentListSearch(t *testing.T, s UIStore) {
	names := []string{"Invoice-Triage", "invoice_bot", "payroll", "in%voice", "ticket-bot"}
	for i, n := range names {
		a := newAgent(fmt.Sprintf("agt_%03d", i), []string{"fin", "hr", "ops"}[i%3], n)
		a.RiskLevel = []string{"low", "high"}[i%2]
		mustCreateAgent(t, s, a)
	}
	tests := []struct {
		name string
		f    store.AgentFilter
		want []string
	}{
		{"contains, any case", store.AgentFilter{NameContains: "INVOICE"}, []string{"agt_000", "agt_001"}},
		{"percent is literal", store.AgentFilter{NameContains: "%"}, []string{"agt_003"}},
		{"underscore is literal", store.AgentFilter{NameContains: "e_b"}, []string{"agt_001"}},
		{"risk", store.AgentFilter{RiskLevel: "high"}, []string{"agt_001", "agt_003"}},
		{"namespaces", store.AgentFilter{Namespaces: []string{"fin", "ops"}}, []string{"agt_000", "agt_002", "agt_003"}},
		{"no namespaces means nothing", store.AgentFilter{Namespaces: []string{}}, nil},
		{"combined", store.AgentFilter{NameContains: "bot", Namespaces: []string{"hr"}, RiskLevel: "high"}, []string{"agt_001", "agt_004"}[:1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAgents(ctx(t), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if ids := agentIDs(got); !slices.Equal(ids, tt.want) {
				t.Errorf("got %v, want %v", ids, tt.want)
			}
		})
	}
}

func testCountAgentsBy(t *testing.T, s UIStore) {
	for i := range 5 {
		a := newAgent(fmt.Sprintf("agt_%03d", i), []string{"fin", "hr"}[i%2], fmt.Sprintf("a%d", i))
		a.RiskLevel = []string{"low", "low", "critical", "medium", "low"}[i]
		mustCreateAgent(t, s, a)
	}
	for field, want := range map[string]map[string]int64{
		"namespace":  {"fin": 3, "hr": 2},
		"risk_level": {"low": 3, "critical": 1, "medium": 1},
		"status":     {store.StatusActive: 5},
	} {
		got, err := s.CountAgentsBy(ctx(t), field)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("count by %s = %v, want %v", field, got, want)
		}
	}
	if _, err := s.CountAgentsBy(ctx(t), "name; DROP TABLE agents"); err == nil {
		t.Error("an unknown field must be refused")
	}
}

func testCountAudit(t *testing.T, s UIStore) {
	// chain gives event seq n the time t0 + n seconds.
	appendN(t, s, 10, func(i int, e *store.AuditEvent) {
		if i%2 == 1 {
			e.Type = "token.refused"
			e.Outcome = "failure"
		}
	})
	n, err := s.CountAudit(ctx(t), "token.issued", t0.Add(3*time.Second), t0.Add(9*time.Second))
	if err != nil || n != 3 { // seqs 3, 5, 7
		t.Errorf("CountAudit = %d, %v; want 3", n, err)
	}
	evs, err := s.RecentAudit(ctx(t), store.AuditFilter{Type: "token.refused", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, e := range evs {
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []int64{10, 8, 6}) {
		t.Errorf("RecentAudit = %v, want [10 8 6]", seqs)
	}
	evs, _ = s.RecentAudit(ctx(t), store.AuditFilter{AfterSeq: 3})
	if len(evs) != 2 || evs[0].Seq != 2 || evs[1].Seq != 1 {
		t.Errorf("RecentAudit before seq 3 = %d events", len(evs))
	}
}

func testCountAttestedStale(t *testing.T, s UIStore) {
	now := t0.Add(time.Hour)
	a := mustCreateAgent(t, s, newAgent("agt_a", "fin", "a")) // credential created at t0
	b := newAgent("agt_b", "fin", "b")
	b.CreatedAt = now
	mustCreateAgent(t, s, b)
	c := newAgent("agt_c", "fin", "c")
	c.Status = store.StatusSuspended
	mustCreateAgent(t, s, c)
	for _, r := range []store.AttestationResult{
		{ID: "att_1", AgentID: a.ID, Status: store.AttestationAffirming, IssuedAt: t0, ExpiresAt: now.Add(time.Minute)},
		{ID: "att_2", AgentID: b.ID, Status: store.AttestationAffirming, IssuedAt: t0, ExpiresAt: now.Add(-time.Minute)},
		{ID: "att_3", AgentID: b.ID, Status: store.AttestationContraindicated, IssuedAt: now, ExpiresAt: now.Add(time.Minute)},
		{ID: "att_4", AgentID: c.ID, Status: store.AttestationAffirming, IssuedAt: now, ExpiresAt: now.Add(time.Minute)},
	} {
		if err := s.CreateAttestation(ctx(t), &r); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.CountAttested(ctx(t), now); err != nil || n != 1 {
		t.Errorf("CountAttested = %d, %v; want 1 (agt_a)", n, err)
	}
	if n, err := s.CountStaleCredentials(ctx(t), t0.Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("CountStaleCredentials = %d, %v; want 1 (agt_a)", n, err)
	}
}
