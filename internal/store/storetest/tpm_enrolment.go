package storetest

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

func pendingEnrolment(id string, exp time.Time) *store.PendingTPMEnrolment {
	return &store.PendingTPMEnrolment{ID: id, Caller: "caller-1", AKName: "000b" + id, AKPublic: []byte{0, 2, 1, 2},
		EKPublicHash: "ekhash", EKCertStatus: store.EKCertAbsent, SecretHash: []byte("secret-hash"), ExpiresAt: exp}
}

func testPendingTPMEnrolment(t *testing.T, s store.Store) {
	p := pendingEnrolment("tpe_1", t0.Add(time.Minute))
	if err := s.CreatePendingTPMEnrolment(ctx(t), p); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePendingTPMEnrolment(ctx(t), pendingEnrolment("tpe_1", t0)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate id: %v, want ErrConflict", err)
	}
	got, err := s.ConsumePendingTPMEnrolment(ctx(t), "tpe_1")
	if err != nil || got.Caller != "caller-1" || got.AKName != "000btpe_1" || !bytes.Equal(got.AKPublic, []byte{0, 2, 1, 2}) ||
		got.EKPublicHash != "ekhash" || got.EKCertStatus != store.EKCertAbsent || string(got.SecretHash) != "secret-hash" ||
		!got.ExpiresAt.Equal(t0.Add(time.Minute)) || got.ExpiresAt.Location() != time.UTC {
		t.Fatalf("ConsumePendingTPMEnrolment = %+v, %v", got, err)
	}
	if _, err := s.ConsumePendingTPMEnrolment(ctx(t), "tpe_1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second consume: %v, want ErrNotFound (single use)", err)
	}
	if err := s.CreatePendingTPMEnrolment(ctx(t), pendingEnrolment("tpe_old", t0.Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePendingTPMEnrolment(ctx(t), pendingEnrolment("tpe_new", t0.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgePendingTPMEnrolments(ctx(t), t0); err != nil || n != 1 {
		t.Errorf("PurgePendingTPMEnrolments = %d, %v; want 1", n, err)
	}
	if _, err := s.ConsumePendingTPMEnrolment(ctx(t), "tpe_new"); err != nil {
		t.Errorf("the unexpired enrolment was purged: %v", err)
	}
	if err := s.CreatePendingTPMEnrolment(ctx(t), &store.PendingTPMEnrolment{ID: "tpe_x"}); err == nil {
		t.Error("a pending enrolment without caller, AK name or secret hash was stored")
	}
}

func testPendingTPMEnrolmentConcurrent(t *testing.T, s store.Store) {
	if err := s.CreatePendingTPMEnrolment(ctx(t), pendingEnrolment("tpe_race", t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.ConsumePendingTPMEnrolment(ctx(t), "tpe_race"); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ConsumePendingTPMEnrolment: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d goroutines consumed one enrolment challenge, want exactly 1", wins.Load())
	}
}

func testTPMEnrolment(t *testing.T, s store.Store) {
	if _, err := s.GetTPMEnrolment(ctx(t), "000bnone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTPMEnrolment(unknown) = %v, want ErrNotFound", err)
	}
	e := &store.TPMEnrolment{AKName: "000baa", AKPublic: []byte{0, 1, 9}, EKPublicHash: "ek1", EKCertStatus: store.EKCertAbsent,
		EnrolledBy: "admin", EnrolledAt: t0}
	if err := s.PutTPMEnrolment(ctx(t), e); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetTPMEnrolment(ctx(t), "000baa")
	if err != nil || !bytes.Equal(got.AKPublic, []byte{0, 1, 9}) || got.EKPublicHash != "ek1" || got.EKCertStatus != store.EKCertAbsent ||
		got.EnrolledBy != "admin" || !got.EnrolledAt.Equal(t0) || got.EnrolledAt.Location() != time.UTC {
		t.Fatalf("GetTPMEnrolment = %+v, %v", got, err)
	}
	// Re-enrolling the same AK (with a verified EK certificate this time) replaces it.
	e2 := &store.TPMEnrolment{AKName: "000baa", AKPublic: []byte{0, 1, 9}, EKPublicHash: "ek1", EKCertStatus: store.EKCertVerified,
		EnrolledBy: "admin2", EnrolledAt: t0.Add(time.Hour)}
	if err := s.PutTPMEnrolment(ctx(t), e2); err != nil {
		t.Fatalf("re-enrolment: %v", err)
	}
	got, err = s.GetTPMEnrolment(ctx(t), "000baa")
	if err != nil || got.EKCertStatus != store.EKCertVerified || got.EnrolledBy != "admin2" || !got.EnrolledAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after re-enrolment: %+v, %v", got, err)
	}
	if err := s.PutTPMEnrolment(ctx(t), &store.TPMEnrolment{AKName: "000bbb"}); err == nil {
		t.Error("an enrolment without AK public, EK hash or certificate status was stored")
	}
}
