package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// RotationStore is a store with the rotation records.
type RotationStore interface {
	store.Store
	store.Rotations
}

// RunRotations runs the conformance suite of store.Rotations (and the credential
// secret location columns) against the stores open returns.
func RunRotations(t *testing.T, open func(t *testing.T) RotationStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s RotationStore)
	}{
		{"CredentialSecretLocation", testCredentialSecretLocation},
		{"RotationCreateUpdate", testRotationCreateUpdate},
		{"OneOpenRotationPerSubject", testOneOpenRotation},
		{"LeaseExclusiveAndTakenOverAfterExpiry", testLease},
		{"LeaseConcurrentAcquire", testLeaseConcurrent},
		{"RotationPolicy", testRotationPolicy},
		{"ActiveCredentials", testActiveCredentials},
		{"DeleteExpiredCredentials", testDeleteExpiredCredentials},
		{"GetAgentByName", testGetAgentByName},
		{"SecretDestroys", testSecretDestroys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func testCredentialSecretLocation(t *testing.T, s RotationStore) {
	a := newAgent("agt_1", "prod", "vaulted")
	c := newCredential("crd_1", a.ID, t0)
	c.Type, c.JWKS, c.SecretHash = store.CredentialClientSecret, nil, []byte("hash")
	c.SecretPath, c.SecretVersion = "lanyard/agents/prod/vaulted", 3
	if err := s.CreateAgent(ctx(t), a, c); err != nil {
		t.Fatal(err)
	}
	next := &store.Credential{ID: "crd_2", AgentID: a.ID, Type: store.CredentialClientSecret, SecretHash: []byte("h2"),
		SecretPath: "lanyard/agents/prod/vaulted", SecretVersion: 4, CreatedAt: t0.Add(time.Hour)}
	if err := s.RotateCredential(ctx(t), a.ID, next, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListCredentials(ctx(t), a.ID)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListCredentials = %v, %v", list, err)
	}
	if list[0].SecretPath != next.SecretPath || list[0].SecretVersion != 4 || list[1].SecretVersion != 3 {
		t.Fatalf("secret locations did not round-trip: %+v", list)
	}
}

func newRotation(id, subject string) *store.Rotation {
	nb := t0.Add(time.Minute)
	return &store.Rotation{ID: id, Kind: store.RotationAgentCredential, Subject: subject, Step: store.StepStarted,
		Cause: "scheduled", Actor: "system", NewRef: "crd_new", OldRef: "crd_old", GraceSeconds: 86400, NotBefore: &nb, CreatedAt: t0}
}

func testRotationCreateUpdate(t *testing.T, s RotationStore) {
	r := newRotation("rot_1", "agt_1")
	if err := s.CreateRotation(ctx(t), r); err != nil {
		t.Fatal(err)
	}
	grace := t0.Add(25 * time.Hour)
	got, err := s.UpdateRotation(ctx(t), "rot_1", func(r *store.Rotation) error {
		r.Step, r.SecretPath, r.SecretVersion, r.GraceUntil, r.Attempts, r.LastError = store.StepActive, "p/q", 7, &grace, 2, "boom"
		r.Subject = "changed" // immutable: restored
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "agt_1" || got.Step != store.StepActive || got.SecretVersion != 7 || !got.GraceUntil.Equal(grace) {
		t.Fatalf("UpdateRotation = %+v", got)
	}
	wantErr := errors.New("abort")
	if _, err := s.UpdateRotation(ctx(t), "rot_1", func(r *store.Rotation) error { r.Step = "x"; return wantErr }); err != wantErr {
		t.Fatalf("aborting fn: %v", err)
	}
	if _, err := s.UpdateRotation(ctx(t), "rot_absent", func(r *store.Rotation) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateRotation(absent) = %v, want ErrNotFound", err)
	}
	open, err := s.OpenRotations(ctx(t))
	if err != nil || len(open) != 1 || open[0].Step != store.StepActive || open[0].LastError != "boom" {
		t.Fatalf("OpenRotations = %+v, %v", open, err)
	}
	done := t0.Add(26 * time.Hour)
	if _, err := s.UpdateRotation(ctx(t), "rot_1", func(r *store.Rotation) error { r.Step, r.FinishedAt = store.StepDone, &done; return nil }); err != nil {
		t.Fatal(err)
	}
	if open, _ := s.OpenRotations(ctx(t)); len(open) != 0 {
		t.Fatalf("finished rotation still open: %+v", open)
	}
	list, err := s.ListRotations(ctx(t), store.RotationAgentCredential, "agt_1", 10)
	if err != nil || len(list) != 1 || list[0].FinishedAt == nil {
		t.Fatalf("ListRotations = %+v, %v", list, err)
	}
}

func testOneOpenRotation(t *testing.T, s RotationStore) {
	if err := s.CreateRotation(ctx(t), newRotation("rot_1", "agt_1")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRotation(ctx(t), newRotation("rot_2", "agt_1")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second open rotation of one subject = %v, want ErrConflict", err)
	}
	other := newRotation("rot_3", "agt_1")
	other.Kind = store.RotationSigningKey // another kind, same subject string: independent
	if err := s.CreateRotation(ctx(t), other); err != nil {
		t.Fatal(err)
	}
	done := t0
	if _, err := s.UpdateRotation(ctx(t), "rot_1", func(r *store.Rotation) error { r.Step, r.FinishedAt = store.StepDone, &done; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRotation(ctx(t), newRotation("rot_4", "agt_1")); err != nil {
		t.Fatalf("new rotation after the previous finished: %v", err)
	}
}

func testLease(t *testing.T, s RotationStore) {
	at := t0
	ok, err := s.AcquireLease(ctx(t), "rotation", "a", at, at.Add(time.Minute))
	if err != nil || !ok {
		t.Fatalf("first acquire = %v, %v", ok, err)
	}
	if ok, err := s.AcquireLease(ctx(t), "rotation", "b", at.Add(30*time.Second), at.Add(90*time.Second)); err != nil || ok {
		t.Fatalf("b acquired a held lease: %v, %v", ok, err)
	}
	if ok, err := s.AcquireLease(ctx(t), "rotation", "a", at.Add(30*time.Second), at.Add(2*time.Minute)); err != nil || !ok {
		t.Fatalf("a could not renew: %v, %v", ok, err)
	}
	if ok, _ := s.AcquireLease(ctx(t), "rotation", "b", at.Add(time.Minute+30*time.Second), at.Add(3*time.Minute)); ok {
		t.Fatal("b took a's renewed lease before it expired")
	}
	// a dies; after expiry b takes over.
	if ok, err := s.AcquireLease(ctx(t), "rotation", "b", at.Add(2*time.Minute+time.Second), at.Add(4*time.Minute)); err != nil || !ok {
		t.Fatalf("b could not take over an expired lease: %v, %v", ok, err)
	}
	if ok, _ := s.AcquireLease(ctx(t), "rotation", "a", at.Add(3*time.Minute), at.Add(5*time.Minute)); ok {
		t.Fatal("a came back and took b's live lease")
	}
	if ok, _ := s.AcquireLease(ctx(t), "other", "a", at, at.Add(time.Minute)); !ok {
		t.Fatal("leases of different names interfere")
	}
	if err := s.ReleaseLease(ctx(t), "rotation", "a"); err != nil { // not a's: no effect
		t.Fatal(err)
	}
	if ok, _ := s.AcquireLease(ctx(t), "rotation", "a", at.Add(3*time.Minute), at.Add(5*time.Minute)); ok {
		t.Fatal("a released b's lease")
	}
	if err := s.ReleaseLease(ctx(t), "rotation", "b"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.AcquireLease(ctx(t), "rotation", "a", at.Add(3*time.Minute), at.Add(5*time.Minute)); !ok {
		t.Fatal("a could not take a released lease")
	}
}

func testLeaseConcurrent(t *testing.T, s RotationStore) {
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			ok, err := s.AcquireLease(ctx(t), "race", fmt.Sprintf("owner-%d", i), t0, t0.Add(time.Minute))
			if err != nil {
				t.Errorf("AcquireLease: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d owners acquired one lease", wins.Load())
	}
}

func testRotationPolicy(t *testing.T, s RotationStore) {
	mustCreateAgent(t, s, newAgent("agt_1", "prod", "p"))
	if _, err := s.GetRotationPolicy(ctx(t), "agt_1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRotationPolicy(none) = %v", err)
	}
	for _, iv := range []int64{3600, 7200} {
		if err := s.PutRotationPolicy(ctx(t), &store.RotationPolicy{AgentID: "agt_1", IntervalSeconds: iv, GraceSeconds: 60}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.GetRotationPolicy(ctx(t), "agt_1")
	if err != nil || p.IntervalSeconds != 7200 || p.GraceSeconds != 60 {
		t.Fatalf("GetRotationPolicy = %+v, %v", p, err)
	}
	if err := s.DeleteRotationPolicy(ctx(t), "agt_1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRotationPolicy(ctx(t), "agt_1"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.PutRotationPolicy(ctx(t), &store.RotationPolicy{AgentID: "agt_absent", IntervalSeconds: 1}); err == nil {
		t.Fatal("policy for a missing agent accepted")
	}
}

func testActiveCredentials(t *testing.T, s RotationStore) {
	for i, status := range []string{store.StatusActive, store.StatusSuspended, store.StatusRevoked, store.StatusDecommissioned, store.StatusPending} {
		a := newAgent(fmt.Sprintf("agt_%d", i), "ns", fmt.Sprintf("a%d", i))
		a.Status = status
		mustCreateAgent(t, s, a)
	}
	// agt_0 rotated: one active, one retiring.
	if err := s.RotateCredential(ctx(t), "agt_0", newCredential("crd_0b", "agt_0", t0.Add(time.Hour)), t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRotationPolicy(ctx(t), &store.RotationPolicy{AgentID: "agt_1", IntervalSeconds: 600, GraceSeconds: 30}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ActiveCredentials(ctx(t), "", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range all {
		got = append(got, d.AgentID+"/"+d.ID)
	}
	want := []string{"agt_0/crd_0b", "agt_1/crd_agt_1", "agt_4/crd_agt_4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ActiveCredentials = %v, want %v", got, want)
	}
	if all[1].Policy == nil || all[1].Policy.IntervalSeconds != 600 || all[0].Policy != nil {
		t.Fatalf("policies not joined: %+v / %+v", all[0].Policy, all[1].Policy)
	}
	if all[0].Namespace != "ns" || all[0].Name != "a0" || !all[0].CreatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("ActiveCredentials[0] = %+v", all[0])
	}
	page, err := s.ActiveCredentials(ctx(t), "agt_0", 1, false)
	if err != nil || len(page) != 1 || page[0].AgentID != "agt_1" {
		t.Fatalf("page after agt_0 = %+v, %v", page, err)
	}
	// Only agents with a policy of their own (and an interval): agt_1. A policy with
	// interval 0 (rotation off for that agent) does not count.
	if err := s.PutRotationPolicy(ctx(t), &store.RotationPolicy{AgentID: "agt_4", IntervalSeconds: 0}); err != nil {
		t.Fatal(err)
	}
	own, err := s.ActiveCredentials(ctx(t), "", 0, true)
	if err != nil || len(own) != 1 || own[0].AgentID != "agt_1" || own[0].Policy == nil || own[0].Policy.IntervalSeconds != 600 {
		t.Fatalf("ActiveCredentials(policyOnly) = %+v, %v; want agt_1 with its policy", own, err)
	}
}

func testDeleteExpiredCredentials(t *testing.T, s RotationStore) {
	mustCreateAgent(t, s, newAgent("agt_1", "ns", "a"))
	if err := s.RotateCredential(ctx(t), "agt_1", newCredential("crd_2", "agt_1", t0.Add(time.Hour)), t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	before := mustGetAgent(t, s, "agt_1").Generation
	if n, err := s.DeleteExpiredCredentials(ctx(t), "agt_1", t0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("inside grace: deleted %d, %v", n, err)
	}
	if n, err := s.DeleteExpiredCredentials(ctx(t), "agt_1", t0.Add(3*time.Hour)); err != nil || n != 1 {
		t.Fatalf("after grace: deleted %d, %v", n, err)
	}
	list, _ := s.ListCredentials(ctx(t), "agt_1")
	if len(list) != 1 || list[0].ID != "crd_2" {
		t.Fatalf("credentials left: %+v", list)
	}
	if mustGetAgent(t, s, "agt_1").Generation <= before {
		t.Fatal("generation not bumped: caches would keep the deleted credential")
	}
}

func testGetAgentByName(t *testing.T, s RotationStore) {
	mustCreateAgent(t, s, newAgent("agt_1", "prod", "x"))
	mustCreateAgent(t, s, newAgent("agt_2", "dev", "x"))
	a, err := s.GetAgentByName(ctx(t), "dev", "x")
	if err != nil || a.ID != "agt_2" {
		t.Fatalf("GetAgentByName = %v, %v", a, err)
	}
	if _, err := s.GetAgentByName(ctx(t), "dev", "y"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
}

func testSecretDestroys(t *testing.T, s RotationStore) {
	for _, p := range []string{"a/b", "c/d", "a/b"} {
		if err := s.AddSecretDestroy(ctx(t), p, "vault down"); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.SecretDestroys(ctx(t))
	if err != nil || len(list) != 2 {
		t.Fatalf("SecretDestroys = %v, %v", list, err)
	}
	if err := s.DoneSecretDestroy(ctx(t), "a/b"); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.SecretDestroys(ctx(t)); len(list) != 1 || list[0] != "c/d" {
		t.Fatalf("after done: %v", list)
	}
}
