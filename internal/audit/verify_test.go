package audit

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// event reads the stored event at seq.
func event(t testing.TB, st store.AuditLog, seq int64) store.AuditEvent {
	t.Helper()
	page, err := st.ListAudit(context.Background(), store.AuditFilter{AfterSeq: seq - 1, Limit: 1})
	if err != nil || len(page) != 1 || page[0].Seq != seq {
		t.Fatalf("read event %d: %v (%d events)", seq, err, len(page))
	}
	return page[0]
}

func TestVerifyDetectsTampering(t *testing.T) {
	const n = 10 // events seeded; event i has Data {"n":i,"scope":"invoices:read"}
	type tamperFunc func(t *testing.T, st store.AuditLog, tp tamperer)
	set := func(seq int64, column string, value any) tamperFunc {
		return func(t *testing.T, _ store.AuditLog, tp tamperer) { tp.set(t, seq, column, value) }
	}
	tests := []struct {
		name       string
		tamper     tamperFunc
		wantOK     bool
		wantSeq    int64
		wantReason string
		wantEvents int64 // events verified before the break
	}{
		{name: "untouched", wantOK: true, wantEvents: n},

		// Each field the hash covers.
		{name: "edited id", tamper: set(5, "id", "evt_forged"), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited time", tamper: func(t *testing.T, st store.AuditLog, tp tamperer) {
			tp.set(t, 5, "time", event(t, st, 5).Time.Add(-time.Hour))
		}, wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited type", tamper: set(5, "type", TypeTokenRefused), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited actor", tamper: set(5, "actor", ActorAdmin), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited agent_id", tamper: set(5, "agent_id", "agt_other"), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited namespace", tamper: set(5, "namespace", "hr"), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited outcome", tamper: set(5, "outcome", OutcomeFailure), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited reason", tamper: set(5, "reason", "nothing to see"), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited request_id", tamper: set(5, "request_id", "req-x"), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited data", tamper: set(5, "data", []byte(`{"n":6,"scope":"invoices:read"}`)), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "data made unparseable", tamper: set(5, "data", []byte(`{"n":`)), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "data emptied", tamper: set(5, "data", []byte(nil)), wantSeq: 5, wantReason: ReasonHash, wantEvents: 4},
		{name: "edited hash", tamper: set(7, "hash", bytes.Repeat([]byte{7}, 32)), wantSeq: 7, wantReason: ReasonHash, wantEvents: 6},
		{name: "edited prev_hash", tamper: set(6, "prev_hash", bytes.Repeat([]byte{6}, 32)), wantSeq: 6, wantReason: ReasonPrevHash, wantEvents: 5},
		{name: "first prev_hash not genesis", tamper: set(1, "prev_hash", []byte(nil)), wantSeq: 1, wantReason: ReasonPrevHash, wantEvents: 0},
		{name: "two edits: the first is reported", tamper: func(t *testing.T, _ store.AuditLog, tp tamperer) {
			tp.set(t, 8, "reason", "x")
			tp.set(t, 3, "reason", "y")
		}, wantSeq: 3, wantReason: ReasonHash, wantEvents: 2},
		{name: "edited with its hash recomputed", tamper: func(t *testing.T, st store.AuditLog, tp tamperer) {
			e := event(t, st, 5)
			e.Outcome = OutcomeFailure
			h, err := eventHash(e.PrevHash, &e)
			if err != nil {
				t.Fatal(err)
			}
			tp.set(t, 5, "outcome", e.Outcome)
			tp.set(t, 5, "hash", h)
		}, wantSeq: 6, wantReason: ReasonPrevHash, wantEvents: 5},

		// Deletion and reordering.
		{name: "deleted middle event", tamper: func(t *testing.T, _ store.AuditLog, tp tamperer) { tp.del(t, 5) },
			wantSeq: 5, wantReason: ReasonSeqGap, wantEvents: 4},
		{name: "deleted first event", tamper: func(t *testing.T, _ store.AuditLog, tp tamperer) { tp.del(t, 1) },
			wantSeq: 1, wantReason: ReasonSeqGap, wantEvents: 0},
		{name: "deleted last event", tamper: func(t *testing.T, _ store.AuditLog, tp tamperer) { tp.del(t, n) },
			wantSeq: n, wantReason: ReasonHead, wantEvents: n - 1},
		{name: "deleted last two events", tamper: func(t *testing.T, _ store.AuditLog, tp tamperer) { tp.del(t, n); tp.del(t, n-1) },
			wantSeq: n - 1, wantReason: ReasonHead, wantEvents: n - 2},
		{name: "deleted middle event, later ones renumbered", tamper: func(t *testing.T, _ store.AuditLog, tp tamperer) {
			tp.del(t, 5)
			for seq := int64(6); seq <= n; seq++ {
				tp.set(t, seq, "seq", seq-1)
			}
			tp.setHead(t, store.AuditHead{Seq: n - 1, Hash: nil})
		}, wantSeq: 5, wantReason: ReasonPrevHash, wantEvents: 4},
		{name: "two events swapped", tamper: func(t *testing.T, _ store.AuditLog, tp tamperer) {
			tp.set(t, 4, "seq", int64(1000))
			tp.set(t, 5, "seq", int64(4))
			tp.set(t, 1000, "seq", int64(5))
		}, wantSeq: 4, wantReason: ReasonPrevHash, wantEvents: 3},

		// The head.
		{name: "event appended without moving the head", tamper: func(t *testing.T, st store.AuditLog, tp tamperer) {
			last := event(t, st, n)
			forged := store.AuditEvent{Seq: n + 1, ID: "evt_forged", Time: last.Time, Type: TypeAgentActivated,
				Actor: ActorAdmin, Data: []byte("{}"), PrevHash: last.Hash}
			h, err := eventHash(forged.PrevHash, &forged)
			if err != nil {
				t.Fatal(err)
			}
			forged.Hash = h
			tp.insert(t, forged)
		}, wantSeq: n + 1, wantReason: ReasonHead, wantEvents: n},
		{name: "head hash edited", tamper: func(t *testing.T, _ store.AuditLog, tp tamperer) {
			tp.setHead(t, store.AuditHead{Seq: n, Hash: bytes.Repeat([]byte{1}, 32)})
		}, wantSeq: n, wantReason: ReasonHead, wantEvents: n},
		{name: "head moved back", tamper: func(t *testing.T, st store.AuditLog, tp tamperer) {
			tp.setHead(t, store.AuditHead{Seq: n - 1, Hash: event(t, st, n-1).Hash})
		}, wantSeq: n, wantReason: ReasonHead, wantEvents: n - 1},

		// What the chain cannot see on its own (see the package doc): it commits to
		// content, not bytes, and a consistent rewrite of the tail needs an anchor
		// kept elsewhere (Report.Head differs from the anchored one).
		{name: "data re-encoded with the same meaning", tamper: set(5, "data", []byte(`{ "scope": "invoices:read", "n": 5.0 }`)),
			wantOK: true, wantEvents: n},
		{name: "truncated with the head rewritten", tamper: func(t *testing.T, st store.AuditLog, tp tamperer) {
			h := store.AuditHead{Seq: n - 1, Hash: event(t, st, n-1).Hash}
			tp.del(t, n)
			tp.setHead(t, h)
		}, wantOK: true, wantEvents: n - 1},
	}
	forEachBackend(t, func(t *testing.T, open func(*testing.T) (store.AuditLog, tamperer)) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st, tp := open(t)
				seed(t, st, n)
				intact := mustVerify(t, st, n)
				if tt.tamper != nil {
					tt.tamper(t, st, tp)
				}

				r, err := Verify(context.Background(), st, 3)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if r.OK != tt.wantOK || r.Events != tt.wantEvents {
					t.Fatalf("Verify = OK %v, %d events (break %v); want OK %v, %d events", r.OK, r.Events, r.Broken, tt.wantOK, tt.wantEvents)
				}
				if tt.wantOK {
					if r.Broken != nil {
						t.Fatalf("OK report carries a break: %v", r.Broken)
					}
					if tt.tamper != nil && tt.wantEvents == n && !bytes.Equal(r.Head, intact.Head) {
						t.Fatalf("head changed: %x, was %x", r.Head, intact.Head)
					}
					return
				}
				if r.Broken == nil {
					t.Fatal("no break reported")
				}
				if r.Broken.Seq != tt.wantSeq || r.Broken.Reason != tt.wantReason {
					t.Fatalf("break = %v; want seq %d: %s", r.Broken, tt.wantSeq, tt.wantReason)
				}
				if r.Broken.Detail == "" {
					t.Error("break has no detail")
				}
				t.Logf("%v", r.Broken)
			})
		}
	})
}

func TestVerifyPageSizes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T) (store.AuditLog, tamperer)) {
		st, _ := open(t)
		seed(t, st, 25)
		var head []byte
		for _, size := range []int{-1, 0, 1, 2, 24, 25, 26, 5000} {
			r, err := Verify(context.Background(), st, size)
			if err != nil || !r.OK || r.Events != 25 {
				t.Fatalf("page size %d: %+v, %v", size, r, err)
			}
			if head != nil && !bytes.Equal(r.Head, head) {
				t.Fatalf("page size %d: head %x, want %x", size, r.Head, head)
			}
			head = r.Head
		}
		if last := event(t, st, 25); !bytes.Equal(head, last.Hash) {
			t.Fatalf("Report.Head %x is not the last hash %x", head, last.Hash)
		}
	})
}

func TestVerifyEmpty(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T) (store.AuditLog, tamperer)) {
		st, _ := open(t)
		r, err := Verify(context.Background(), st, 0)
		if err != nil || !r.OK || r.Events != 0 || r.Head != nil || r.Broken != nil {
			t.Fatalf("Verify(empty) = %+v, %v", r, err)
		}
	})
}

// TestVerifyWhileAppending checks that appends racing with Verify are never mistaken
// for tampering.
func TestVerifyWhileAppending(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T) (store.AuditLog, tamperer)) {
		st, _ := open(t)
		// A short queue keeps the producer in step with the writer, so the shutdown
		// flush stays short.
		l := start(t, st, nil, Options{MaxBatch: 5, QueueSize: 50, FlushInterval: 100 * time.Microsecond})
		const total = 2000
		produced := make(chan struct{})
		go func() {
			defer close(produced)
			for i := 1; i <= total; i++ {
				if err := l.Enqueue(testEvent(i)); err != nil {
					t.Errorf("Enqueue: %v", err)
					return
				}
			}
		}()
		var prev int64
		for done := false; !done; {
			select {
			case <-produced:
				done = true
			default:
			}
			r, err := Verify(context.Background(), st, 50)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !r.OK {
				t.Fatalf("Verify during appends: %v", r.Broken)
			}
			if r.Events < prev {
				t.Fatalf("chain shrank from %d to %d events", prev, r.Events)
			}
			prev = r.Events
		}
		if err := l.stop(); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, st, total)
	})
}

// failingReader fails every read.
type failingReader struct{ store.AuditLog }

var errRead = errors.New("injected: read failed")

func (failingReader) ListAudit(context.Context, store.AuditFilter) ([]store.AuditEvent, error) {
	return nil, errRead
}

func TestVerifyReadError(t *testing.T) {
	r, err := Verify(context.Background(), failingReader{&memStore{}}, 0)
	if !errors.Is(err, errRead) {
		t.Fatalf("Verify: got %v, want the read error", err)
	}
	if r.OK || r.Broken != nil {
		t.Fatalf("a read failure was reported as a verdict: %+v", r)
	}
}
