// Package storetest is the conformance suite for store.Store implementations, and the
// helpers other packages' tests use to get a real store: OpenSQLite, OpenPostgres and
// the per-test PostgreSQL schemas behind them.
//
// Run checks every method against the contract documented in package store. An
// implementation passes when every subtest passes; the suite uses only the store.Store
// interface, so it runs unchanged against any implementation.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// Run runs the conformance suite. open must return a new, empty, migrated store for
// each call, and arrange for it to be closed when its test ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"Agent/CreateGet", testAgentCreateGet},
		{"Agent/CreateConflict", testAgentCreateConflict},
		{"Agent/NotFound", testAgentNotFound},
		{"Agent/List", testAgentList},
		{"Agent/ListLimit", testAgentListLimit},
		{"Agent/Update", testAgentUpdate},
		{"Agent/UpdateConflict", testAgentUpdateConflict},
		{"Agent/UpdateConcurrent", testAgentUpdateConcurrent},
		{"Agent/CountByStatus", testAgentCountByStatus},
		{"Credential/RotateListDelete", testCredentialRotateListDelete},
		{"Credential/NotFound", testCredentialNotFound},
		{"Credential/Federated", testFederatedCredentials},
		{"Federation/Issuers", testFederationIssuers},
		{"SigningKey/CreateListUpdate", testSigningKeys},
		{"Audit/Empty", testAuditEmpty},
		{"Audit/AppendChain", testAuditAppendChain},
		{"Audit/BuildErrorRollsBack", testAuditBuildError},
		{"Audit/RefusesBrokenChain", testAuditRefusesBrokenChain},
		{"Audit/LargeBatch", testAuditLargeBatch},
		{"Audit/Concurrent", testAuditConcurrent},
		{"Audit/List", testAuditList},
		{"Revocation", testRevocation},
		{"Attestation/Challenge", testAttestationChallenge},
		{"Attestation/ChallengeConcurrent", testAttestationChallengeConcurrent},
		{"Attestation/Results", testAttestationResults},
		{"Attestation/TPMCounters", testTPMCounters},
		{"TPMEnrolment/Pending", testPendingTPMEnrolment},
		{"TPMEnrolment/PendingConcurrent", testPendingTPMEnrolmentConcurrent},
		{"TPMEnrolment/Enrolled", testTPMEnrolment},
		{"Setting", testSetting},
		{"Setting/IfAbsentConcurrent", testSettingIfAbsentConcurrent},
		{"Concurrent/MixedWorkload", testMixedWorkload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// t0 is a fixed instant at microsecond resolution, in a non-UTC zone so that the
// suite checks the store converts.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.FixedZone("UTC+2", 2*3600))

func ctx(t *testing.T) context.Context { return t.Context() }

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// newAgent returns an agent with every field set.
func newAgent(id, namespace, name string) *store.Agent {
	tnb := t0.Add(-time.Minute)
	return &store.Agent{
		ID:                    id,
		ClientID:              "cli_" + id,
		Name:                  name,
		Namespace:             namespace,
		Owner:                 "alice@example.com",
		Purpose:               "summarise tickets",
		RiskLevel:             "medium",
		Status:                store.StatusActive,
		StatusReason:          "approved",
		CredentialType:        store.CredentialPrivateKeyJWT,
		TokenAlg:              "ES256",
		Reference:             []byte(`{"model":"sha256:abc"}`),
		AllowedScopes:         store.StringList{"tickets:read", "tickets:write"},
		AllowedResources:      store.StringList{"https://api.example.com/"},
		MaxTokenTTLSeconds:    900,
		AttestationTTLSeconds: 3600,
		CanIntrospect:         true,
		TokensNotBefore:       &tnb,
		Generation:            1,
		CreatedAt:             t0,
		UpdatedAt:             t0.Add(time.Second),
	}
}

func newCredential(id, agentID string, created time.Time) *store.Credential {
	return &store.Credential{
		ID:        id,
		AgentID:   agentID,
		Type:      store.CredentialPrivateKeyJWT,
		State:     store.CredentialActive,
		JWKS:      []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"x","y":"y"}]}`),
		CreatedAt: created,
	}
}

func mustCreateAgent(t *testing.T, s store.Store, a *store.Agent) *store.Agent {
	t.Helper()
	if err := s.CreateAgent(ctx(t), a, newCredential("crd_"+a.ID, a.ID, a.CreatedAt)); err != nil {
		t.Fatalf("CreateAgent(%s): %v", a.ID, err)
	}
	return a
}

func mustGetAgent(t *testing.T, s store.Store, id string) *store.Agent {
	t.Helper()
	a, err := s.GetAgent(ctx(t), id)
	if err != nil {
		t.Fatalf("GetAgent(%s): %v", id, err)
	}
	return a
}

func testAgentCreateGet(t *testing.T, s store.Store) {
	want := newAgent("agt_1", "prod", "summariser")
	cred := newCredential("crd_1", "agt_1", t0)
	cred.Type, cred.JWKS, cred.SecretHash = store.CredentialClientSecret, nil, bytes.Repeat([]byte{0, 0xff}, 16)
	if err := s.CreateAgent(ctx(t), want, cred); err != nil {
		t.Fatalf("CreateAgent: %v", err)
	}

	got := mustGetAgent(t, s, "agt_1")
	checkSame(t, "GetAgent", got, want)
	checkUTC(t, "GetAgent", got)

	byClient, err := s.GetAgentByClientID(ctx(t), "cli_agt_1")
	if err != nil {
		t.Fatalf("GetAgentByClientID: %v", err)
	}
	checkSame(t, "GetAgentByClientID", byClient, want)

	creds, err := s.ListCredentials(ctx(t), "agt_1")
	if err != nil {
		t.Fatalf("ListCredentials: %v", err)
	}
	if len(creds) != 1 {
		t.Fatalf("ListCredentials: got %d credentials, want 1", len(creds))
	}
	checkSame(t, "ListCredentials", &creds[0], cred)
	checkUTC(t, "ListCredentials", &creds[0])

	// Zero times are set by the store.
	before := time.Now().Add(-time.Second)
	bare := &store.Agent{ID: "agt_2", ClientID: "cli_2", Name: "bare", Namespace: "prod", Status: store.StatusPending}
	if err := s.CreateAgent(ctx(t), bare, newCredential("crd_2", "agt_2", time.Time{})); err != nil {
		t.Fatalf("CreateAgent(zero times): %v", err)
	}
	got = mustGetAgent(t, s, "agt_2")
	if got.CreatedAt.Before(before) || got.UpdatedAt.Before(before) {
		t.Errorf("CreateAgent(zero times): CreatedAt %v, UpdatedAt %v; want about now", got.CreatedAt, got.UpdatedAt)
	}
	checkUTC(t, "GetAgent(zero times)", got)
}

func testAgentCreateConflict(t *testing.T, s store.Store) {
	mustCreateAgent(t, s, newAgent("agt_1", "prod", "summariser"))

	tests := []struct {
		name   string
		agent  *store.Agent
		credID string
	}{
		{"same ID", newAgent("agt_1", "prod", "other"), "crd_new1"},
		{"same namespace and name", newAgent("agt_2", "prod", "summariser"), "crd_new2"},
		{"same client ID", func() *store.Agent {
			a := newAgent("agt_3", "prod", "third")
			a.ClientID = "cli_agt_1"
			return a
		}(), "crd_new3"},
		// The agent is new but its credential's ID is taken: nothing may be stored.
		{"credential ID taken", newAgent("agt_4", "prod", "fourth"), "crd_agt_1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateAgent(ctx(t), tt.agent, newCredential(tt.credID, tt.agent.ID, t0))
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("CreateAgent: got %v, want ErrConflict", err)
			}
			if tt.agent.ID != "agt_1" {
				if _, err := s.GetAgent(ctx(t), tt.agent.ID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("GetAgent after failed create: got %v, want ErrNotFound", err)
				}
			}
			creds, err := s.ListCredentials(ctx(t), tt.agent.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range creds {
				if c.ID == tt.credID {
					t.Errorf("credential %s was stored by a failed create", tt.credID)
				}
			}
		})
	}
	// The original is untouched.
	checkSame(t, "GetAgent", mustGetAgent(t, s, "agt_1"), newAgent("agt_1", "prod", "summariser"))
	// The same name in another namespace is fine.
	mustCreateAgent(t, s, newAgent("agt_5", "staging", "summariser"))
}

func testAgentNotFound(t *testing.T, s store.Store) {
	if _, err := s.GetAgent(ctx(t), "agt_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAgent: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetAgentByClientID(ctx(t), "cli_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAgentByClientID: got %v, want ErrNotFound", err)
	}
	called := false
	_, err := s.UpdateAgent(ctx(t), "agt_missing", func(*store.Agent) error { called = true; return nil })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateAgent: got %v, want ErrNotFound", err)
	}
	if called {
		t.Error("UpdateAgent called fn for a missing agent")
	}
}

func testAgentList(t *testing.T, s store.Store) {
	// 24 agents created in shuffled order: the list order must come from the IDs.
	var all []*store.Agent
	for i := range 24 {
		a := newAgent(fmt.Sprintf("agt_%03d", i), []string{"ns-a", "ns-b"}[i%2], fmt.Sprintf("agent-%d", i))
		a.ClientID = fmt.Sprintf("cli_%03d", i)
		a.Owner = []string{"alice", "bob", "carol"}[i%3]
		a.Status = []string{store.StatusActive, store.StatusSuspended, store.StatusActive, store.StatusRevoked}[i%4]
		all = append(all, a)
	}
	shuffled := slices.Clone(all)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, a := range shuffled {
		mustCreateAgent(t, s, a)
	}

	ids := func(match func(a *store.Agent) bool) []string {
		var out []string
		for _, a := range all {
			if match(a) {
				out = append(out, a.ID)
			}
		}
		return out
	}
	tests := []struct {
		name   string
		filter store.AgentFilter
		want   []string
	}{
		{"all", store.AgentFilter{}, ids(func(*store.Agent) bool { return true })},
		{"namespace", store.AgentFilter{Namespace: "ns-b"}, ids(func(a *store.Agent) bool { return a.Namespace == "ns-b" })},
		{"owner", store.AgentFilter{Owner: "carol"}, ids(func(a *store.Agent) bool { return a.Owner == "carol" })},
		{"status", store.AgentFilter{Status: store.StatusSuspended}, ids(func(a *store.Agent) bool { return a.Status == store.StatusSuspended })},
		{"namespace owner status", store.AgentFilter{Namespace: "ns-a", Owner: "alice", Status: store.StatusActive},
			ids(func(a *store.Agent) bool {
				return a.Namespace == "ns-a" && a.Owner == "alice" && a.Status == store.StatusActive
			})},
		{"no match", store.AgentFilter{Namespace: "ns-z"}, nil},
		{"after", store.AgentFilter{After: "agt_020"}, []string{"agt_021", "agt_022", "agt_023"}},
		{"after last", store.AgentFilter{After: "agt_023"}, nil},
		{"limit", store.AgentFilter{Limit: 3}, []string{"agt_000", "agt_001", "agt_002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAgents(ctx(t), tt.filter)
			if err != nil {
				t.Fatalf("ListAgents: %v", err)
			}
			if gotIDs := agentIDs(got); !slices.Equal(gotIDs, tt.want) {
				t.Errorf("ListAgents(%+v) = %v, want %v", tt.filter, gotIDs, tt.want)
			}
			for i := range got {
				checkUTC(t, "ListAgents", &got[i])
			}
		})
	}

	// Walking the pages with the cursor visits every match once, in order.
	for _, pageSize := range []int{1, 4, 5, 12} {
		t.Run(fmt.Sprintf("pages of %d", pageSize), func(t *testing.T) {
			f := store.AgentFilter{Namespace: "ns-a", Limit: pageSize}
			var seen []string
			for range 100 {
				page, err := s.ListAgents(ctx(t), f)
				if err != nil {
					t.Fatalf("ListAgents: %v", err)
				}
				if len(page) > pageSize {
					t.Fatalf("ListAgents returned %d agents, limit %d", len(page), pageSize)
				}
				if len(page) == 0 {
					break
				}
				seen = append(seen, agentIDs(page)...)
				f.After = page[len(page)-1].ID
			}
			if want := ids(func(a *store.Agent) bool { return a.Namespace == "ns-a" }); !slices.Equal(seen, want) {
				t.Errorf("pages = %v, want %v", seen, want)
			}
		})
	}

	// Every field comes back from a list as from a get.
	got, err := s.ListAgents(ctx(t), store.AgentFilter{After: "agt_006", Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("ListAgents: %v, %d agents", err, len(got))
	}
	checkSame(t, "ListAgents", &got[0], all[7])
}

func testAgentListLimit(t *testing.T, s store.Store) {
	for i := range 1001 {
		a := newAgent(fmt.Sprintf("agt_%04d", i), "ns", fmt.Sprintf("a%d", i))
		mustCreateAgent(t, s, a)
	}
	tests := []struct {
		limit, want int
	}{{0, 100}, {-1, 100}, {1000, 1000}, {1001, 1000}, {5000, 1000}}
	for _, tt := range tests {
		got, err := s.ListAgents(ctx(t), store.AgentFilter{Limit: tt.limit})
		if err != nil {
			t.Fatalf("ListAgents: %v", err)
		}
		if len(got) != tt.want {
			t.Errorf("ListAgents(Limit: %d) returned %d agents, want %d", tt.limit, len(got), tt.want)
		}
	}
}

func agentIDs(as []store.Agent) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func testAgentUpdate(t *testing.T, s store.Store) {
	orig := mustCreateAgent(t, s, newAgent("agt_1", "prod", "summariser"))
	// A bystander in the same state: an update must touch only its own row.
	bystander := mustCreateAgent(t, s, newAgent("agt_2", "prod", "bystander"))
	before := time.Now().Add(-time.Second)
	cutoff := t0.Add(time.Hour)

	got, err := s.UpdateAgent(ctx(t), "agt_1", func(a *store.Agent) error {
		checkSame(t, "UpdateAgent fn argument", a, orig)
		a.Status = store.StatusSuspended
		a.StatusReason = "anomaly"
		a.AllowedScopes = store.StringList{"tickets:read"}
		a.Reference = nil
		a.CanIntrospect = false
		a.TokensNotBefore = &cutoff
		// Attempts to change what the store owns are ignored.
		a.ID = "agt_hijack"
		a.Generation = 100
		a.CreatedAt = t0.Add(-time.Hour)
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateAgent: %v", err)
	}
	want := *orig
	want.Status, want.StatusReason = store.StatusSuspended, "anomaly"
	want.AllowedScopes, want.Reference, want.CanIntrospect = store.StringList{"tickets:read"}, nil, false
	want.TokensNotBefore = &cutoff
	want.Generation = orig.Generation + 1
	want.UpdatedAt = got.UpdatedAt
	checkSame(t, "UpdateAgent result", got, &want)
	checkUTC(t, "UpdateAgent result", got)
	if got.UpdatedAt.Before(before) {
		t.Errorf("UpdatedAt = %v, want about now", got.UpdatedAt)
	}
	checkSame(t, "GetAgent after update", mustGetAgent(t, s, "agt_1"), &want)
	checkSame(t, "bystander after update", mustGetAgent(t, s, "agt_2"), bystander)
	if _, err := s.GetAgent(ctx(t), "agt_hijack"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("fn changed the agent's ID: GetAgent(agt_hijack) = %v", err)
	}

	// An error from fn aborts the update and comes back unchanged.
	errVeto := errors.New("veto")
	_, err = s.UpdateAgent(ctx(t), "agt_1", func(a *store.Agent) error {
		a.Status = store.StatusRevoked
		return errVeto
	})
	if err != errVeto {
		t.Errorf("UpdateAgent with failing fn: got %v, want the fn's error unchanged", err)
	}
	checkSame(t, "GetAgent after aborted update", mustGetAgent(t, s, "agt_1"), &want)

	// A second update increments again.
	got, err = s.UpdateAgent(ctx(t), "agt_1", func(a *store.Agent) error { a.Purpose = "p2"; return nil })
	if err != nil {
		t.Fatalf("UpdateAgent: %v", err)
	}
	if got.Generation != orig.Generation+2 || got.Purpose != "p2" {
		t.Errorf("second update: Generation %d, Purpose %q; want %d, p2", got.Generation, got.Purpose, orig.Generation+2)
	}
}

func testAgentUpdateConflict(t *testing.T, s store.Store) {
	mustCreateAgent(t, s, newAgent("agt_1", "prod", "one"))
	mustCreateAgent(t, s, newAgent("agt_2", "prod", "two"))
	mustCreateAgent(t, s, newAgent("agt_3", "staging", "three"))
	want := mustGetAgent(t, s, "agt_2")

	for name, fn := range map[string]func(a *store.Agent){
		"rename onto an existing name":          func(a *store.Agent) { a.Name = "one" },
		"client ID of another agent":            func(a *store.Agent) { a.ClientID = "cli_agt_1" },
		"move onto a name in another namespace": func(a *store.Agent) { a.Namespace, a.Name = "staging", "three" },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.UpdateAgent(ctx(t), "agt_2", func(a *store.Agent) error { fn(a); return nil })
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("UpdateAgent: got %v, want ErrConflict", err)
			}
			checkSame(t, "GetAgent after conflicting update", mustGetAgent(t, s, "agt_2"), want)
		})
	}
}

// testAgentUpdateConcurrent increments a counter kept in Purpose from many goroutines:
// a lost update would leave it short.
func testAgentUpdateConcurrent(t *testing.T, s store.Store) {
	a := newAgent("agt_1", "prod", "counter")
	a.Purpose = "0"
	mustCreateAgent(t, s, a)
	const workers, perWorker = 20, 5

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				_, err := s.UpdateAgent(ctx(t), "agt_1", func(a *store.Agent) error {
					n, err := strconv.Atoi(a.Purpose)
					if err != nil {
						return err
					}
					a.Purpose = strconv.Itoa(n + 1)
					return nil
				})
				if err != nil {
					t.Errorf("UpdateAgent: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := mustGetAgent(t, s, "agt_1")
	if want := strconv.Itoa(workers * perWorker); got.Purpose != want {
		t.Errorf("counter = %s, want %s (lost updates)", got.Purpose, want)
	}
	if want := a.Generation + workers*perWorker; got.Generation != want {
		t.Errorf("Generation = %d, want %d", got.Generation, want)
	}
}

func testAgentCountByStatus(t *testing.T, s store.Store) {
	got, err := s.CountAgentsByStatus(ctx(t))
	if err != nil {
		t.Fatalf("CountAgentsByStatus: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("CountAgentsByStatus on an empty store = %v, want empty", got)
	}
	statuses := []string{store.StatusActive, store.StatusActive, store.StatusActive, store.StatusPending, store.StatusRevoked}
	for i, st := range statuses {
		a := newAgent(fmt.Sprintf("agt_%d", i), "ns", fmt.Sprintf("a%d", i))
		a.Status = st
		mustCreateAgent(t, s, a)
	}
	got, err = s.CountAgentsByStatus(ctx(t))
	if err != nil {
		t.Fatalf("CountAgentsByStatus: %v", err)
	}
	want := map[string]int64{store.StatusActive: 3, store.StatusPending: 1, store.StatusRevoked: 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CountAgentsByStatus = %v, want %v", got, want)
	}
}

func testCredentialRotateListDelete(t *testing.T, s store.Store) {
	a := mustCreateAgent(t, s, newAgent("agt_1", "prod", "rotator"))
	c1 := newCredential("crd_agt_1", "agt_1", t0) // created by mustCreateAgent

	grace1 := t0.Add(time.Hour)
	c2 := newCredential("crd_2", "agt_1", t0.Add(time.Minute))
	c2.Type, c2.JWKS, c2.SecretHash = store.CredentialClientSecret, nil, []byte("hash-2")
	if err := s.RotateCredential(ctx(t), "agt_1", c2, grace1); err != nil {
		t.Fatalf("RotateCredential: %v", err)
	}
	if got := mustGetAgent(t, s, "agt_1").Generation; got != a.Generation+1 {
		t.Errorf("Generation after rotation = %d, want %d", got, a.Generation+1)
	}
	c1.State, c1.ExpiresAt = store.CredentialRetiring, &grace1
	checkCredentials(t, s, "agt_1", c2, c1)

	// A second rotation retires c2; c1 keeps its own grace period.
	grace2 := t0.Add(2 * time.Hour)
	c3 := newCredential("crd_3", "agt_1", t0.Add(2*time.Minute))
	if err := s.RotateCredential(ctx(t), "agt_1", c3, grace2); err != nil {
		t.Fatalf("RotateCredential: %v", err)
	}
	c2.State, c2.ExpiresAt = store.CredentialRetiring, &grace2
	checkCredentials(t, s, "agt_1", c3, c2, c1)

	// Another agent's credentials are not touched.
	mustCreateAgent(t, s, newAgent("agt_2", "prod", "bystander"))
	if err := s.DeleteCredentials(ctx(t), "agt_1"); err != nil {
		t.Fatalf("DeleteCredentials: %v", err)
	}
	checkCredentials(t, s, "agt_1")
	if got := mustGetAgent(t, s, "agt_1").Generation; got != a.Generation+3 {
		t.Errorf("Generation after delete = %d, want %d", got, a.Generation+3)
	}
	checkCredentials(t, s, "agt_2", newCredential("crd_agt_2", "agt_2", t0))
}

func checkCredentials(t *testing.T, s store.Store, agentID string, want ...*store.Credential) {
	t.Helper()
	got, err := s.ListCredentials(ctx(t), agentID)
	if err != nil {
		t.Fatalf("ListCredentials: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListCredentials(%s) returned %d credentials, want %d", agentID, len(got), len(want))
	}
	for i := range got {
		checkSame(t, fmt.Sprintf("ListCredentials[%d]", i), &got[i], want[i])
		checkUTC(t, "ListCredentials", &got[i])
	}
}

func testCredentialNotFound(t *testing.T, s store.Store) {
	err := s.RotateCredential(ctx(t), "agt_missing", newCredential("crd_x", "agt_missing", t0), t0)
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateCredential: got %v, want ErrNotFound", err)
	}
	if got, err := s.ListCredentials(ctx(t), "agt_missing"); err != nil || len(got) != 0 {
		t.Errorf("ListCredentials after failed rotation = %v, %v; want none", got, err)
	}
	if err := s.DeleteCredentials(ctx(t), "agt_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteCredentials: got %v, want ErrNotFound", err)
	}
	// A credential ID in use is a conflict, and the rotation does not happen.
	a := mustCreateAgent(t, s, newAgent("agt_1", "prod", "one"))
	err = s.RotateCredential(ctx(t), "agt_1", newCredential("crd_agt_1", "agt_1", t0), t0)
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("RotateCredential with a used ID: got %v, want ErrConflict", err)
	}
	checkCredentials(t, s, "agt_1", newCredential("crd_agt_1", "agt_1", t0))
	if got := mustGetAgent(t, s, "agt_1").Generation; got != a.Generation {
		t.Errorf("Generation after failed rotation = %d, want %d", got, a.Generation)
	}
}

func testSigningKeys(t *testing.T, s store.Store) {
	if got, err := s.ListSigningKeys(ctx(t)); err != nil || len(got) != 0 {
		t.Fatalf("ListSigningKeys on an empty store = %v, %v", got, err)
	}
	activated := t0.Add(time.Minute)
	k1 := &store.SigningKey{KID: "k1", Alg: "ES256", State: store.KeyActive, PublicJWK: []byte(`{"kid":"k1"}`),
		SecretPath: "lanyard/keys/k1", SecretVersion: 3, CreatedAt: t0.Add(time.Second), ActivatedAt: &activated}
	k2 := &store.SigningKey{KID: "k0-newer", Alg: "ES256", State: store.KeyNext, PublicJWK: []byte(`{"kid":"k0"}`),
		SecretPath: "lanyard/keys/k0", SecretVersion: 1, CreatedAt: t0.Add(2 * time.Second)}
	for _, k := range []*store.SigningKey{k2, k1} {
		if err := s.CreateSigningKey(ctx(t), k); err != nil {
			t.Fatalf("CreateSigningKey(%s): %v", k.KID, err)
		}
	}
	dup := *k1
	if err := s.CreateSigningKey(ctx(t), &dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateSigningKey(duplicate kid): got %v, want ErrConflict", err)
	}
	checkKeys(t, s, k1, k2) // oldest first, not by kid

	retired, notAfter := t0.Add(time.Hour), t0.Add(25*time.Hour)
	got, err := s.UpdateSigningKey(ctx(t), "k1", func(k *store.SigningKey) error {
		checkSame(t, "UpdateSigningKey fn argument", k, k1)
		k.State, k.RetiredAt, k.NotAfter = store.KeyRetired, &retired, &notAfter
		k.KID = "k-hijack"
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateSigningKey: %v", err)
	}
	k1.State, k1.RetiredAt, k1.NotAfter = store.KeyRetired, &retired, &notAfter
	checkSame(t, "UpdateSigningKey result", got, k1)
	checkKeys(t, s, k1, k2)

	errVeto := errors.New("veto")
	if _, err := s.UpdateSigningKey(ctx(t), "k0-newer", func(k *store.SigningKey) error {
		k.State = store.KeyActive
		return errVeto
	}); err != errVeto {
		t.Errorf("UpdateSigningKey with failing fn: got %v, want the fn's error unchanged", err)
	}
	checkKeys(t, s, k1, k2)

	if _, err := s.UpdateSigningKey(ctx(t), "missing", func(*store.SigningKey) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSigningKey(missing): got %v, want ErrNotFound", err)
	}
}

func checkKeys(t *testing.T, s store.Store, want ...*store.SigningKey) {
	t.Helper()
	got, err := s.ListSigningKeys(ctx(t))
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListSigningKeys returned %d keys, want %d", len(got), len(want))
	}
	for i := range got {
		checkSame(t, fmt.Sprintf("ListSigningKeys[%d]", i), &got[i], want[i])
		checkUTC(t, "ListSigningKeys", &got[i])
	}
}

// chain builds events continuing head, hashing as the audit package does in spirit:
// Hash = SHA-256(PrevHash || seq || id).
func chain(head store.AuditHead, n int, mod func(i int, e *store.AuditEvent)) []store.AuditEvent {
	out := make([]store.AuditEvent, n)
	prev := head.Hash
	for i := range out {
		seq := head.Seq + 1 + int64(i)
		e := store.AuditEvent{
			Seq:       seq,
			ID:        fmt.Sprintf("evt_%d", seq),
			Time:      t0.Add(time.Duration(seq) * time.Second),
			Type:      "token.issued",
			Actor:     "agent:agt_1",
			AgentID:   "agt_1",
			Namespace: "prod",
			Outcome:   "success",
			Reason:    "",
			Data:      []byte(`{"scope":"tickets:read"}`),
			RequestID: fmt.Sprintf("req_%d", seq),
		}
		if mod != nil {
			mod(i, &e)
		}
		e.PrevHash = prev
		h := sha256.New()
		h.Write(prev)
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(e.Seq)))
		h.Write([]byte(e.ID))
		e.Hash = h.Sum(nil)
		out[i] = e
		prev = e.Hash
	}
	return out
}

func appendN(t *testing.T, s store.Store, n int, mod func(i int, e *store.AuditEvent)) []store.AuditEvent {
	t.Helper()
	var appended []store.AuditEvent
	err := s.AppendAudit(ctx(t), func(head store.AuditHead) ([]store.AuditEvent, error) {
		appended = chain(head, n, mod)
		return appended, nil
	})
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	return appended
}

func mustHead(t *testing.T, s store.Store) store.AuditHead {
	t.Helper()
	h, err := s.AuditHead(ctx(t))
	if err != nil {
		t.Fatalf("AuditHead: %v", err)
	}
	return h
}

func testAuditEmpty(t *testing.T, s store.Store) {
	if h := mustHead(t, s); h.Seq != 0 || len(h.Hash) != 0 {
		t.Errorf("AuditHead on an empty log = %+v, want the zero head", h)
	}
	if got, err := s.ListAudit(ctx(t), store.AuditFilter{}); err != nil || len(got) != 0 {
		t.Errorf("ListAudit on an empty log = %v, %v", got, err)
	}
	// Zero events is a no-op.
	if err := s.AppendAudit(ctx(t), func(store.AuditHead) ([]store.AuditEvent, error) { return nil, nil }); err != nil {
		t.Errorf("AppendAudit(no events): %v", err)
	}
	if h := mustHead(t, s); h.Seq != 0 {
		t.Errorf("AuditHead after appending nothing = %+v", h)
	}
}

func testAuditAppendChain(t *testing.T, s store.Store) {
	var heads []store.AuditHead
	var all []store.AuditEvent
	for _, n := range []int{1, 3, 2} {
		err := s.AppendAudit(ctx(t), func(head store.AuditHead) ([]store.AuditEvent, error) {
			heads = append(heads, head)
			evs := chain(head, n, nil)
			all = append(all, evs...)
			return evs, nil
		})
		if err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
		last := all[len(all)-1]
		if h := mustHead(t, s); h.Seq != last.Seq || !bytes.Equal(h.Hash, last.Hash) {
			t.Fatalf("AuditHead = %d/%x, want %d/%x", h.Seq, h.Hash, last.Seq, last.Hash)
		}
	}
	// Each build saw the head the previous append left.
	if heads[0].Seq != 0 || heads[1].Seq != 1 || heads[2].Seq != 4 || !bytes.Equal(heads[2].Hash, all[3].Hash) {
		t.Errorf("build saw heads %+v", heads)
	}
	got, err := s.ListAudit(ctx(t), store.AuditFilter{})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	checkEvents(t, got, all)
	verifyChain(t, got)
}

func checkEvents(t *testing.T, got, want []store.AuditEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range got {
		checkSame(t, fmt.Sprintf("event[%d]", i), &got[i], &want[i])
		checkUTC(t, "event", &got[i])
	}
}

// verifyChain checks events are numbered 1..n without gaps and linked by hash.
func verifyChain(t *testing.T, events []store.AuditEvent) {
	t.Helper()
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: gap or duplicate", i, e.Seq)
		}
		if i > 0 && !bytes.Equal(e.PrevHash, events[i-1].Hash) {
			t.Fatalf("event seq %d does not link to seq %d: the chain forked", e.Seq, e.Seq-1)
		}
	}
}

func testAuditBuildError(t *testing.T, s store.Store) {
	appendN(t, s, 2, nil)
	before := mustHead(t, s)
	errBuild := errors.New("cannot canonicalise")
	err := s.AppendAudit(ctx(t), func(head store.AuditHead) ([]store.AuditEvent, error) {
		return chain(head, 3, nil), errBuild
	})
	if err != errBuild {
		t.Errorf("AppendAudit with failing build: got %v, want the build's error unchanged", err)
	}
	if h := mustHead(t, s); h.Seq != before.Seq || !bytes.Equal(h.Hash, before.Hash) {
		t.Errorf("head moved after a failed build: %+v, was %+v", h, before)
	}
	if got, _ := s.ListAudit(ctx(t), store.AuditFilter{}); len(got) != 2 {
		t.Errorf("%d events after a failed build, want 2", len(got))
	}
}

func testAuditRefusesBrokenChain(t *testing.T, s store.Store) {
	appendN(t, s, 2, nil)
	before := mustHead(t, s)
	tests := []struct {
		name  string
		build func(head store.AuditHead) []store.AuditEvent
	}{
		{"reused seq", func(h store.AuditHead) []store.AuditEvent {
			return chain(store.AuditHead{Seq: h.Seq - 1, Hash: h.Hash}, 1, nil)
		}},
		{"gap", func(h store.AuditHead) []store.AuditEvent {
			return chain(store.AuditHead{Seq: h.Seq + 1, Hash: h.Hash}, 1, nil)
		}},
		{"gap inside the batch", func(h store.AuditHead) []store.AuditEvent {
			evs := chain(h, 3, nil)
			evs[2].Seq++
			return evs
		}},
		{"fork from the head", func(h store.AuditHead) []store.AuditEvent {
			return chain(store.AuditHead{Seq: h.Seq, Hash: []byte("some other hash")}, 1, nil)
		}},
		{"fork inside the batch", func(h store.AuditHead) []store.AuditEvent {
			evs := chain(h, 2, nil)
			evs[1].PrevHash = []byte("x")
			return evs
		}},
		{"no hash", func(h store.AuditHead) []store.AuditEvent {
			evs := chain(h, 1, nil)
			evs[0].Hash = nil
			return evs
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.AppendAudit(ctx(t), func(h store.AuditHead) ([]store.AuditEvent, error) { return tt.build(h), nil })
			if err == nil {
				t.Fatal("AppendAudit accepted events that do not continue the chain")
			}
			if h := mustHead(t, s); h.Seq != before.Seq || !bytes.Equal(h.Hash, before.Hash) {
				t.Errorf("head moved: %+v, was %+v", h, before)
			}
			if got, _ := s.ListAudit(ctx(t), store.AuditFilter{}); len(got) != 2 {
				t.Errorf("%d events after a refused append, want 2", len(got))
			}
		})
	}
}

func testAuditLargeBatch(t *testing.T, s store.Store) {
	appendN(t, s, 1, nil)
	want := appendN(t, s, 2500, func(i int, e *store.AuditEvent) { e.AgentID = fmt.Sprintf("agt_%d", i%7) })
	if h := mustHead(t, s); h.Seq != 2501 {
		t.Fatalf("AuditHead.Seq = %d, want 2501", h.Seq)
	}
	var got []store.AuditEvent
	f := store.AuditFilter{AfterSeq: 1, Limit: 1000}
	for {
		page, err := s.ListAudit(ctx(t), f)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		f.AfterSeq = page[len(page)-1].Seq
	}
	checkEvents(t, got, want)
	for _, tt := range []struct{ limit, want int }{{0, 100}, {-5, 100}, {1000, 1000}, {1001, 1000}} {
		page, err := s.ListAudit(ctx(t), store.AuditFilter{Limit: tt.limit})
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		if len(page) != tt.want {
			t.Errorf("ListAudit(Limit: %d) returned %d events, want %d", tt.limit, len(page), tt.want)
		}
	}
}

// testAuditConcurrent appends from several goroutines at once: the result must be one
// gap-free chain, with no duplicate seq and no fork.
func testAuditConcurrent(t *testing.T, s store.Store) {
	const workers, perWorker = 6, 15
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				n := 1 + (w+i)%3
				err := s.AppendAudit(ctx(t), func(head store.AuditHead) ([]store.AuditEvent, error) {
					return chain(head, n, func(_ int, e *store.AuditEvent) { e.Actor = fmt.Sprintf("worker:%d", w) }), nil
				})
				if err != nil {
					t.Errorf("AppendAudit: %v", err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var got []store.AuditEvent
	f := store.AuditFilter{Limit: 1000}
	for {
		page, err := s.ListAudit(ctx(t), f)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		f.AfterSeq = page[len(page)-1].Seq
	}
	if len(got) != total {
		t.Fatalf("%d events stored, %d appended", len(got), total)
	}
	verifyChain(t, got)
	if h := mustHead(t, s); h.Seq != int64(total) || !bytes.Equal(h.Hash, got[len(got)-1].Hash) {
		t.Errorf("AuditHead = %d, want %d and the last event's hash", h.Seq, total)
	}
}

func testAuditList(t *testing.T, s store.Store) {
	// Event seq i (1..12) is at t0+i s; agents, types and outcomes cycle.
	all := appendN(t, s, 12, func(i int, e *store.AuditEvent) {
		e.AgentID = []string{"agt_a", "agt_b", "agt_c"}[i%3]
		e.Type = []string{"token.issued", "token.refused"}[i%2]
		e.Outcome = map[bool]string{true: "success", false: "failure"}[i%4 != 3]
	})
	at := func(seq int) time.Time { return t0.Add(time.Duration(seq) * time.Second) }
	seqs := func(match func(e store.AuditEvent) bool) []int64 {
		var out []int64
		for _, e := range all {
			if match(e) {
				out = append(out, e.Seq)
			}
		}
		return out
	}
	tests := []struct {
		name   string
		filter store.AuditFilter
		want   []int64
	}{
		{"all", store.AuditFilter{}, seqs(func(store.AuditEvent) bool { return true })},
		{"agent", store.AuditFilter{AgentID: "agt_b"}, seqs(func(e store.AuditEvent) bool { return e.AgentID == "agt_b" })},
		{"type", store.AuditFilter{Type: "token.refused"}, seqs(func(e store.AuditEvent) bool { return e.Type == "token.refused" })},
		{"outcome", store.AuditFilter{Outcome: "failure"}, seqs(func(e store.AuditEvent) bool { return e.Outcome == "failure" })},
		// Since is inclusive, Until exclusive; a filter in another zone means the same instant.
		{"since", store.AuditFilter{Since: at(10)}, []int64{10, 11, 12}},
		{"until", store.AuditFilter{Until: at(3)}, []int64{1, 2}},
		{"since until", store.AuditFilter{Since: at(4).UTC(), Until: at(7).In(time.FixedZone("UTC-5", -5*3600))}, []int64{4, 5, 6}},
		{"after seq", store.AuditFilter{AfterSeq: 9}, []int64{10, 11, 12}},
		{"agent and type", store.AuditFilter{AgentID: "agt_a", Type: "token.issued"},
			seqs(func(e store.AuditEvent) bool { return e.AgentID == "agt_a" && e.Type == "token.issued" })},
		{"limit and cursor", store.AuditFilter{AgentID: "agt_c", AfterSeq: 3, Limit: 2}, []int64{6, 9}},
		{"no match", store.AuditFilter{AgentID: "agt_z"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAudit(ctx(t), tt.filter)
			if err != nil {
				t.Fatalf("ListAudit: %v", err)
			}
			var gotSeqs []int64
			for _, e := range got {
				gotSeqs = append(gotSeqs, e.Seq)
			}
			if !slices.Equal(gotSeqs, tt.want) {
				t.Errorf("ListAudit(%+v) = %v, want %v", tt.filter, gotSeqs, tt.want)
			}
		})
	}
}

func testRevocation(t *testing.T, s store.Store) {
	now := t0
	live := store.RevokedToken{JTI: "jti-live", AgentID: "agt_1", ExpiresAt: now.Add(time.Hour), RevokedAt: now}
	expired := store.RevokedToken{JTI: "jti-expired", AgentID: "agt_1", ExpiresAt: now.Add(-time.Second), RevokedAt: now.Add(-time.Hour)}
	for _, r := range []store.RevokedToken{live, expired} {
		if err := s.RevokeToken(ctx(t), r); err != nil {
			t.Fatalf("RevokeToken(%s): %v", r.JTI, err)
		}
	}
	// Revoking again is not an error.
	again := live
	again.RevokedAt = now.Add(time.Minute)
	if err := s.RevokeToken(ctx(t), again); err != nil {
		t.Errorf("RevokeToken(already revoked): %v", err)
	}
	for jti, want := range map[string]bool{"jti-live": true, "jti-expired": true, "jti-other": false} {
		got, err := s.IsTokenRevoked(ctx(t), jti)
		if err != nil || got != want {
			t.Errorf("IsTokenRevoked(%s) = %v, %v; want %v", jti, got, err, want)
		}
	}
	// ListRevocations returns the unexpired ones only (a token expiring exactly now is
	// still listed: introspection treats exp <= now as expired on its own).
	list, err := s.ListRevocations(ctx(t), now)
	if err != nil || len(list) != 1 || list[0].JTI != "jti-live" || !list[0].ExpiresAt.Equal(live.ExpiresAt) || list[0].AgentID != "agt_1" {
		t.Errorf("ListRevocations(now) = %+v, %v; want only jti-live", list, err)
	}
	if list, err := s.ListRevocations(ctx(t), now.Add(-time.Minute)); err != nil || len(list) != 2 {
		t.Errorf("ListRevocations(a minute ago) = %d revocations, %v; want 2", len(list), err)
	}
	n, err := s.PurgeRevocations(ctx(t), now)
	if err != nil || n != 1 {
		t.Errorf("PurgeRevocations = %d, %v; want 1", n, err)
	}
	for jti, want := range map[string]bool{"jti-live": true, "jti-expired": false} {
		if got, err := s.IsTokenRevoked(ctx(t), jti); err != nil || got != want {
			t.Errorf("after purge IsTokenRevoked(%s) = %v, %v; want %v", jti, got, err, want)
		}
	}
	if n, err := s.PurgeRevocations(ctx(t), now); err != nil || n != 0 {
		t.Errorf("second PurgeRevocations = %d, %v; want 0", n, err)
	}
	// A token is purged only once it expired before now, in whatever zone now is given.
	if n, err := s.PurgeRevocations(ctx(t), live.ExpiresAt.UTC()); err != nil || n != 0 {
		t.Errorf("PurgeRevocations(at expiry) = %d, %v; want 0", n, err)
	}
	if n, err := s.PurgeRevocations(ctx(t), live.ExpiresAt.Add(time.Microsecond)); err != nil || n != 1 {
		t.Errorf("PurgeRevocations(after expiry) = %d, %v; want 1", n, err)
	}
}

func testSetting(t *testing.T, s store.Store) {
	if _, err := s.GetSetting(ctx(t), "admin_token_hash"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSetting(missing): got %v, want ErrNotFound", err)
	}
	v1 := []byte{0, 1, 2, 0xfe, 0xff}
	if stored, err := s.PutSettingIfAbsent(ctx(t), "admin_token_hash", v1); err != nil || !stored {
		t.Fatalf("PutSettingIfAbsent(new) = %v, %v; want true", stored, err)
	}
	if stored, err := s.PutSettingIfAbsent(ctx(t), "admin_token_hash", []byte("other")); err != nil || stored {
		t.Errorf("PutSettingIfAbsent(existing) = %v, %v; want false", stored, err)
	}
	checkSetting(t, s, "admin_token_hash", v1)

	v2 := []byte("replaced")
	if err := s.PutSetting(ctx(t), "admin_token_hash", v2); err != nil {
		t.Fatalf("PutSetting: %v", err)
	}
	checkSetting(t, s, "admin_token_hash", v2)
	if err := s.PutSetting(ctx(t), "other", []byte("x")); err != nil {
		t.Fatalf("PutSetting(new): %v", err)
	}
	checkSetting(t, s, "other", []byte("x"))
	checkSetting(t, s, "admin_token_hash", v2)
}

func checkSetting(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	got, err := s.GetSetting(ctx(t), key)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("GetSetting(%s) = %x, %v; want %x", key, got, err, want)
	}
}

func testSettingIfAbsentConcurrent(t *testing.T, s store.Store) {
	const workers = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []int
	for w := range workers {
		wg.Go(func() {
			stored, err := s.PutSettingIfAbsent(ctx(t), "bootstrap", []byte(strconv.Itoa(w)))
			if err != nil {
				t.Errorf("PutSettingIfAbsent: %v", err)
				return
			}
			if stored {
				mu.Lock()
				winners = append(winners, w)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d callers stored, want exactly 1", len(winners))
	}
	checkSetting(t, s, "bootstrap", []byte(strconv.Itoa(winners[0])))
}

// testMixedWorkload runs every kind of write alongside reads from many goroutines. No
// operation may fail: on SQLite this is where "database is locked" would show.
func testMixedWorkload(t *testing.T, s store.Store) {
	const agents, rounds = 8, 12
	for i := range agents {
		mustCreateAgent(t, s, newAgent(fmt.Sprintf("agt_%d", i), "ns", fmt.Sprintf("a%d", i)))
	}
	var wg sync.WaitGroup
	run := func(name string, fn func(i int) error) {
		wg.Go(func() {
			for i := range rounds {
				if err := fn(i); err != nil {
					t.Errorf("%s round %d: %v", name, i, err)
					return
				}
			}
		})
	}
	for w := range agents {
		id := fmt.Sprintf("agt_%d", w)
		run("UpdateAgent", func(i int) error {
			_, err := s.UpdateAgent(ctx(t), id, func(a *store.Agent) error { a.StatusReason = strconv.Itoa(i); return nil })
			return err
		})
		run("RotateCredential", func(i int) error {
			return s.RotateCredential(ctx(t), id, newCredential(fmt.Sprintf("crd_%d_%d", w, i), id, time.Time{}), t0)
		})
		run("AppendAudit", func(int) error {
			return s.AppendAudit(ctx(t), func(h store.AuditHead) ([]store.AuditEvent, error) { return chain(h, 2, nil), nil })
		})
		run("RevokeToken", func(i int) error {
			return s.RevokeToken(ctx(t), store.RevokedToken{JTI: fmt.Sprintf("jti_%d_%d", w, i), AgentID: id, ExpiresAt: t0})
		})
		run("PutSetting", func(i int) error { return s.PutSetting(ctx(t), "k", []byte{byte(w), byte(i)}) })
		run("reads", func(int) error {
			if _, err := s.GetAgentByClientID(ctx(t), "cli_"+id); err != nil {
				return err
			}
			if _, err := s.ListCredentials(ctx(t), id); err != nil {
				return err
			}
			if _, err := s.IsTokenRevoked(ctx(t), "jti_0_0"); err != nil {
				return err
			}
			_, err := s.ListAudit(ctx(t), store.AuditFilter{Limit: 10})
			return err
		})
	}
	wg.Wait()
	for i := range agents {
		a := mustGetAgent(t, s, fmt.Sprintf("agt_%d", i))
		if want := 1 + int64(2*rounds); a.Generation != want {
			t.Errorf("agent %s Generation = %d, want %d (updates + rotations)", a.ID, a.Generation, want)
		}
	}
	if h := mustHead(t, s); h.Seq != 2*agents*rounds {
		t.Errorf("AuditHead.Seq = %d, want %d", h.Seq, 2*agents*rounds)
	}
}

// checkSame compares two records field by field: times by instant, byte slices and
// lists with nil equal to empty, everything else exactly.
func checkSame(t *testing.T, what string, got, want any) {
	t.Helper()
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if !sameValue(gv.Field(i), wv.Field(i)) {
			t.Errorf("%s: %s = %v, want %v", what, name, show(gv.Field(i)), show(wv.Field(i)))
		}
	}
}

var timeType = reflect.TypeFor[time.Time]()

func sameValue(g, w reflect.Value) bool {
	switch {
	case g.Type() == timeType:
		return g.Interface().(time.Time).Equal(w.Interface().(time.Time))
	case g.Kind() == reflect.Pointer:
		if g.IsNil() || w.IsNil() {
			return g.IsNil() == w.IsNil()
		}
		return sameValue(g.Elem(), w.Elem())
	case g.Kind() == reflect.Slice:
		if g.Len() != w.Len() {
			return false
		}
		for i := range g.Len() {
			if !sameValue(g.Index(i), w.Index(i)) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(g.Interface(), w.Interface())
	}
}

func show(v reflect.Value) any {
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		return v.Elem().Interface()
	}
	if b, ok := v.Interface().([]byte); ok {
		return fmt.Sprintf("%q", b)
	}
	return v.Interface()
}

// checkUTC checks every time in the record is in UTC.
func checkUTC(t *testing.T, what string, rec any) {
	t.Helper()
	v := reflect.ValueOf(rec).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer && !f.IsNil() {
			f = f.Elem()
		}
		if tm, ok := f.Interface().(time.Time); ok && tm.Location() != time.UTC {
			t.Errorf("%s: %s is in %v, want UTC", what, v.Type().Field(i).Name, tm.Location())
		}
	}
}

func testAttestationChallenge(t *testing.T, s store.Store) {
	c := &store.AttestationChallenge{NonceHash: []byte("hash-1"), ClientID: "agt_1", ExpiresAt: t0.Add(time.Minute)}
	if err := s.CreateChallenge(ctx(t), c); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateChallenge(ctx(t), &store.AttestationChallenge{NonceHash: []byte("hash-1"), ClientID: "agt_2", ExpiresAt: t0}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate nonce: %v, want ErrConflict", err)
	}
	got, err := s.ConsumeChallenge(ctx(t), []byte("hash-1"))
	if err != nil || got.ClientID != "agt_1" || !got.ExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("ConsumeChallenge = %+v, %v", got, err)
	}
	if _, err := s.ConsumeChallenge(ctx(t), []byte("hash-1")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second consume: %v, want ErrNotFound (single use)", err)
	}
	old := &store.AttestationChallenge{NonceHash: []byte("hash-old"), ClientID: "agt_1", ExpiresAt: t0.Add(-time.Second)}
	if err := s.CreateChallenge(ctx(t), old); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*store.AttestationChallenge{
		{NonceHash: []byte("hash-a1"), ClientID: "agt_a", ExpiresAt: t0.Add(time.Minute)},
		{NonceHash: []byte("hash-a2"), ClientID: "agt_a", ExpiresAt: t0.Add(2 * time.Minute)},
		{NonceHash: []byte("hash-b1"), ClientID: "agt_b", ExpiresAt: t0.Add(time.Minute)},
	} {
		if err := s.CreateChallenge(ctx(t), c); err != nil {
			t.Fatalf("challenge %d: %v", i, err)
		}
	}
	if n, err := s.CountChallenges(ctx(t), "agt_a", t0); err != nil || n != 2 {
		t.Errorf("CountChallenges(agt_a) = %d, %v; want 2", n, err)
	}
	if n, err := s.CountChallenges(ctx(t), "agt_a", t0.Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("CountChallenges(agt_a, +1m) = %d, %v; want 1 (expiring exactly then does not count)", n, err)
	}
	if n, err := s.CountChallenges(ctx(t), "agt_1", t0); err != nil || n != 0 {
		t.Errorf("CountChallenges(agt_1) = %d, %v; want 0 (its only challenge expired)", n, err)
	}
	if n, err := s.CountChallenges(ctx(t), "agt_c", t0); err != nil || n != 0 {
		t.Errorf("CountChallenges(agt_c) = %d, %v; want 0", n, err)
	}
	if n, err := s.PurgeChallenges(ctx(t), t0); err != nil || n != 1 {
		t.Errorf("PurgeChallenges = %d, %v; want 1", n, err)
	}
}

func testAttestationChallengeConcurrent(t *testing.T, s store.Store) {
	if err := s.CreateChallenge(ctx(t), &store.AttestationChallenge{NonceHash: []byte("race"), ClientID: "agt_1", ExpiresAt: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.ConsumeChallenge(ctx(t), []byte("race")); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ConsumeChallenge: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d goroutines consumed one nonce, want exactly 1", wins.Load())
	}
}

func testAttestationResults(t *testing.T, s store.Store) {
	a := mustCreateAgent(t, s, newAgent("agt_att", "ns", "att"))
	for i, st := range []string{store.AttestationContraindicated, store.AttestationAffirming} {
		r := &store.AttestationResult{ID: fmt.Sprintf("att_%d", i), AgentID: a.ID, Status: st, Host: "tpm",
			Measurements: []byte(`{"model_digest":"x"}`), Checks: []byte(`[]`), IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
		if err := s.CreateAttestation(ctx(t), r); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.ListAttestations(ctx(t), a.ID, 10)
	if err != nil || len(list) != 2 || list[0].ID != "att_1" || list[0].Status != store.AttestationAffirming ||
		string(list[0].Measurements) != `{"model_digest":"x"}` || !list[0].ExpiresAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("ListAttestations = %+v, %v", list, err)
	}
	if list, _ := s.ListAttestations(ctx(t), a.ID, 1); len(list) != 1 || list[0].ID != "att_1" {
		t.Errorf("limit 1 gave %+v, want the newest", list)
	}
	if list, _ := s.ListAttestations(ctx(t), "agt_other", 10); len(list) != 0 {
		t.Errorf("another agent's list = %+v", list)
	}
}

func testTPMCounters(t *testing.T, s store.Store) {
	var seen []*store.TPMCounters
	bump := func(clock int64) error {
		return s.UpdateTPMCounters(ctx(t), "000b1234", func(cur *store.TPMCounters) (*store.TPMCounters, error) {
			seen = append(seen, cur)
			if cur != nil && clock <= cur.Clock {
				return nil, fmt.Errorf("clock went backwards")
			}
			return &store.TPMCounters{Clock: clock, ResetCount: 1, RestartCount: 2}, nil
		})
	}
	if err := bump(100); err != nil {
		t.Fatal(err)
	}
	if err := bump(200); err != nil {
		t.Fatal(err)
	}
	if err := bump(150); err == nil || err.Error() != "clock went backwards" {
		t.Errorf("rollback: %v, want fn's error unchanged", err)
	}
	if seen[0] != nil || seen[1] == nil || seen[1].Clock != 100 || seen[2].Clock != 200 || seen[2].RestartCount != 2 {
		t.Errorf("fn saw %+v %+v %+v", seen[0], seen[1], seen[2])
	}
}
