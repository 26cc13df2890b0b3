package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

func TestLogChainsAcrossBatches(t *testing.T) {
	fixed := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))
	tests := []struct {
		name        string
		opts        Options
		events      int
		wantBatches int // at least
	}{
		{name: "one event per batch", opts: Options{MaxBatch: 1}, events: 50, wantBatches: 50},
		{name: "small batches", opts: Options{MaxBatch: 7, FlushInterval: time.Millisecond}, events: 1000, wantBatches: 143},
		{name: "queue smaller than batch", opts: Options{MaxBatch: 64, QueueSize: 5}, events: 300, wantBatches: 60},
		{name: "defaults", events: 2000, wantBatches: 4},
	}
	forEachBackend(t, func(t *testing.T, open func(*testing.T) (store.AuditLog, tamperer)) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st, _ := open(t)
				tt.opts.Now = func() time.Time { return fixed }
				l := start(t, st, nil, tt.opts)
				for i := 1; i <= tt.events; i++ {
					if err := l.Enqueue(testEvent(i)); err != nil {
						t.Fatalf("Enqueue: %v", err)
					}
				}
				if err := l.stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				mustVerify(t, st, int64(tt.events))

				s := l.Stats()
				if s.Appended != uint64(tt.events) || s.Failed != 0 || s.QueueLen != 0 || s.Batches < uint64(tt.wantBatches) {
					t.Errorf("Stats = %+v, want Appended %d in >= %d batches, Failed 0, QueueLen 0", s, tt.events, tt.wantBatches)
				}
				ids := map[string]bool{}
				for i, e := range listAll(t, st) {
					var d struct{ N int }
					if err := json.Unmarshal(e.Data, &d); err != nil {
						t.Fatalf("seq %d: data %s: %v", e.Seq, e.Data, err)
					}
					// One producer: acceptance order is chain order.
					if d.N != i+1 {
						t.Fatalf("seq %d holds event %d, want %d", e.Seq, d.N, i+1)
					}
					if !strings.HasPrefix(e.ID, "evt_") || len(e.ID) != 36 || ids[e.ID] {
						t.Fatalf("seq %d: bad or duplicate ID %q", e.Seq, e.ID)
					}
					ids[e.ID] = true
					if want := fixed.UTC().Truncate(time.Microsecond); !e.Time.Equal(want) || e.Time.Location() != time.UTC {
						t.Fatalf("seq %d: time %v, want %v in UTC", e.Seq, e.Time, want)
					}
				}
			})
		}
	})
}

func TestRecordReturnsAfterCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T) (store.AuditLog, tamperer)) {
		st, _ := open(t)
		// A long flush interval makes an early return visible.
		l := start(t, st, nil, Options{FlushInterval: 30 * time.Millisecond})
		for i := 1; i <= 5; i++ {
			e := Event{
				Type:      TypeAgentSuspended,
				Actor:     ActorAdmin,
				AgentID:   "agt_1",
				Namespace: "finance",
				Outcome:   OutcomeSuccess,
				Reason:    fmt.Sprintf("incident %d", i),
				RequestID: "req-1",
				Data:      map[string]any{"from": "active", "to": "suspended", "html": "<b>&</b>"},
			}
			if err := l.Record(context.Background(), e); err != nil {
				t.Fatalf("Record: %v", err)
			}
			all := listAll(t, st)
			if len(all) != i {
				t.Fatalf("after Record %d: %d events visible, want %d", i, len(all), i)
			}
			got := all[i-1]
			if got.Seq != int64(i) || got.Type != e.Type || got.Actor != e.Actor || got.AgentID != e.AgentID ||
				got.Namespace != e.Namespace || got.Outcome != e.Outcome || got.Reason != e.Reason || got.RequestID != e.RequestID {
				t.Fatalf("stored %+v, recorded %+v", got, e)
			}
			if want := `{"from":"active","html":"<b>&</b>","to":"suspended"}`; string(got.Data) != want {
				t.Fatalf("stored data %s, want canonical %s", got.Data, want)
			}
		}
		mustVerify(t, st, 5)
	})
}

func TestEnqueueConcurrentThenShutdown(t *testing.T) {
	const producers, total = 32, 10000
	tests := []struct {
		name string
		opts Options
	}{
		{name: "defaults"},
		// The queue is full most of the time: the back-pressure path.
		{name: "tiny queue", opts: Options{QueueSize: 16, MaxBatch: 8}},
	}
	forEachBackend(t, func(t *testing.T, open func(*testing.T) (store.AuditLog, tamperer)) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st, _ := open(t)
				l := start(t, st, nil, tt.opts)
				var wg sync.WaitGroup
				for g := range producers {
					wg.Go(func() {
						for i := g; i < total; i += producers {
							e := Event{Type: TypeTokenIssued, Actor: fmt.Sprintf("agent:%d", g), Data: map[string]any{"n": i}}
							if err := l.Enqueue(e); err != nil {
								t.Errorf("Enqueue: %v", err)
								return
							}
						}
					})
				}
				wg.Wait()
				if err := l.stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}

				mustVerify(t, st, total)
				seen := make([]bool, total)
				lastOf := map[string]int{}
				for _, e := range listAll(t, st) {
					var d struct{ N int }
					if err := json.Unmarshal(e.Data, &d); err != nil {
						t.Fatal(err)
					}
					if seen[d.N] {
						t.Fatalf("event %d appended twice", d.N)
					}
					seen[d.N] = true
					// Each producer's events keep their order.
					if last, ok := lastOf[e.Actor]; ok && d.N < last {
						t.Fatalf("%s: event %d after %d", e.Actor, d.N, last)
					}
					lastOf[e.Actor] = d.N
				}
				for n, ok := range seen {
					if !ok {
						t.Fatalf("event %d lost", n)
					}
				}
				if s := l.Stats(); s.Appended != total || s.QueueLen != 0 {
					t.Errorf("Stats = %+v", s)
				}
			})
		}
	})
}

func TestClosed(t *testing.T) {
	st := &memStore{}
	l := start(t, st, nil, Options{})
	if err := l.Record(context.Background(), testEvent(1)); err != nil {
		t.Fatalf("Record: %v", err)
	}
	if err := l.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"Record", func() error { return l.Record(context.Background(), testEvent(2)) }},
		{"Enqueue", func() error { return l.Enqueue(testEvent(3)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrClosed) {
				t.Fatalf("got %v, want ErrClosed", err)
			}
		})
	}
	mustVerify(t, st, 1)
	if err := l.Run(context.Background()); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("second Run returned %v, want a misuse error", err)
	}
}

// TestShutdownWhileCommitting cancels the writer while it is inside a commit and a
// producer waits for queue space: the waiting producer is refused at once, and
// everything accepted is still appended.
func TestShutdownWhileCommitting(t *testing.T) {
	st := &memStore{gate: make(chan struct{})}
	l := start(t, st, nil, Options{QueueSize: 2, FlushInterval: time.Millisecond})

	if err := l.Enqueue(testEvent(1)); err != nil {
		t.Fatal(err)
	}
	// The writer takes event 1 and waits at the gate; then the queue fills.
	waitFor(t, "the writer to take the first event", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.writing == 1
	})
	for i := 2; i <= 3; i++ {
		if err := l.Enqueue(testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error)
	go func() { blocked <- l.Enqueue(testEvent(4)) }()
	waitFor(t, "a producer to wait for space", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.space != nil
	})

	l.cancel()
	select {
	case err := <-blocked:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Enqueue: got %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked Enqueue still waiting after shutdown")
	}
	if err := l.Record(context.Background(), testEvent(5)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record during shutdown: got %v, want ErrClosed", err)
	}

	close(st.gate)
	if err := l.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	mustVerify(t, st, 3)
}

func TestRecordContext(t *testing.T) {
	st := &memStore{}
	l := New(st, nil, Options{})
	// No writer yet: Record cannot complete, and gives up with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Record(ctx, testEvent(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Record: got %v, want DeadlineExceeded", err)
	}
	// The event was accepted and is appended once the writer runs.
	r := &running{Log: l, done: make(chan error, 1)}
	r.run(t)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, st, 1)
}

func TestAppendRetry(t *testing.T) {
	injected := errors.New("injected: connection reset")
	const secret = "s3cr3t-value-that-must-not-be-logged"
	tests := []struct {
		name     string
		failures int
		wantLost bool
	}{
		{name: "first attempt fails", failures: 1},
		{name: "all attempts but the last fail", failures: 3},
		{name: "every attempt fails", failures: 4, wantLost: true},
	}
	forEachBackend(t, func(t *testing.T, open func(*testing.T) (store.AuditLog, tamperer)) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				inner, _ := open(t)
				st := &faultyStore{AuditLog: inner, err: injected}
				logs := &syncBuffer{}
				logger := slog.New(slog.NewJSONHandler(logs, nil))
				opts := Options{Retries: 3, RetryBackoff: time.Millisecond, FlushInterval: time.Millisecond}
				seed(t, st, 4) // a chain to continue
				base := st.appendCalls()

				// Queue Enqueue'd events and one Record'ed event before the writer
				// starts, so that they share one batch.
				l := New(st, logger, opts)
				for i := 5; i <= 7; i++ {
					e := testEvent(i)
					e.Data["token"] = secret
					if err := l.Enqueue(e); err != nil {
						t.Fatal(err)
					}
				}
				recorded := make(chan error, 1)
				go func() {
					e := testEvent(8)
					e.Type = TypeAgentRevoked
					e.Data["token"] = secret
					recorded <- l.Record(context.Background(), e)
				}()
				waitFor(t, "the Record'ed event to be queued", func() bool { return l.Stats().QueueLen == 4 })
				st.failAppends(tt.failures)
				r := &running{Log: l, done: make(chan error, 1)}
				r.run(t)

				err := <-recorded
				s := l.Stats()
				wantCalls := base + tt.failures + 1
				if tt.wantLost {
					wantCalls = base + 4 // Retries 3: four attempts
					if !errors.Is(err, injected) {
						t.Fatalf("Record: got %v, want the store's error", err)
					}
					if s.Failed != 4 || s.Appended != 0 {
						t.Fatalf("Stats = %+v, want Failed 4, Appended 0", s)
					}
					out := logs.String()
					if strings.Contains(out, secret) {
						t.Fatalf("event data leaked to the log:\n%s", out)
					}
					for _, want := range []string{`"type":"token.issued"`, `"type":"agent.revoked"`, `"request_id":"req-5"`, `"request_id":"req-8"`, "injected: connection reset"} {
						if !strings.Contains(out, want) {
							t.Errorf("log lacks %s:\n%s", want, out)
						}
					}
				} else {
					if err != nil {
						t.Fatalf("Record: %v", err)
					}
					if s.Failed != 0 || s.Appended != 4 || s.Batches != 1 {
						t.Fatalf("Stats = %+v, want Appended 4 in 1 batch", s)
					}
				}
				if got := st.appendCalls(); got != wantCalls {
					t.Errorf("AppendAudit called %d times, want %d", got-base, wantCalls-base)
				}

				// The chain continues intact after the failure, lost events or not.
				if err := l.Record(context.Background(), testEvent(9)); err != nil {
					t.Fatalf("Record after retries: %v", err)
				}
				want := int64(9)
				if tt.wantLost {
					want = 5
				}
				mustVerify(t, st, want)
			})
		}
	})
}

func TestAwkwardInput(t *testing.T) {
	const marker = `{"audit_error":"data not encodable as JSON"}`
	tests := []struct {
		name     string
		event    Event
		wantData string
		check    func(t *testing.T, e store.AuditEvent)
	}{
		{
			name:     "invalid UTF-8 and NUL in fields",
			event:    Event{Type: TypeTokenRefused, Actor: "agent:\xff\xfe", Reason: "bad\x00client", RequestID: "r\xc3"},
			wantData: "{}",
			check: func(t *testing.T, e store.AuditEvent) {
				if e.Actor != "agent:\uFFFD" || e.Reason != "bad\uFFFDclient" || e.RequestID != "r\uFFFD" {
					t.Errorf("stored %q %q %q", e.Actor, e.Reason, e.RequestID)
				}
			},
		},
		{
			name:     "NUL and invalid UTF-8 in data",
			event:    Event{Type: TypeTokenRefused, Data: map[string]any{"client_id": "a\x00b\xff"}},
			wantData: `{"client_id":"a\u0000b` + "\uFFFD" + `"}`,
		},
		{
			name:     "data that cannot be JSON",
			event:    Event{Type: TypeTokenIssued, Data: map[string]any{"f": math.NaN()}},
			wantData: marker,
		},
		{
			name:     "data with a channel",
			event:    Event{Type: TypeTokenIssued, Data: map[string]any{"c": make(chan int)}},
			wantData: marker,
		},
		{
			name:     "nested data is canonicalised",
			event:    Event{Type: TypeTokenIssued, Data: map[string]any{"b": []any{1.50, "x"}, "a": map[string]any{"z": 1e21, "y": nil}}},
			wantData: `{"a":{"y":null,"z":1e+21},"b":[1.5,"x"]}`,
		},
	}
	forEachBackend(t, func(t *testing.T, open func(*testing.T) (store.AuditLog, tamperer)) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st, _ := open(t)
				l := start(t, st, nil, Options{FlushInterval: time.Millisecond})
				if err := l.Record(context.Background(), tt.event); err != nil {
					t.Fatalf("Record: %v", err)
				}
				mustVerify(t, st, 1)
				e := listAll(t, st)[0]
				if string(e.Data) != tt.wantData {
					t.Errorf("data %s, want %s", e.Data, tt.wantData)
				}
				if tt.check != nil {
					tt.check(t, e)
				}
			})
		}
	})
}

func TestEmptyTypeRefused(t *testing.T) {
	l := New(&memStore{}, nil, Options{})
	if err := l.Enqueue(Event{Actor: ActorAdmin}); err == nil {
		t.Fatal("Enqueue accepted an event without a type")
	}
}

// TestShutdownFlushFailure checks that Run reports events it could not append while
// shutting down, so that main can exit non-zero.
func TestShutdownFlushFailure(t *testing.T) {
	injected := errors.New("injected: database gone")
	st := &faultyStore{AuditLog: &memStore{}, err: injected}
	st.failAppends(1000)
	l := New(st, nil, Options{RetryBackoff: time.Millisecond})
	for i := 1; i <= 3; i++ {
		if err := l.Enqueue(testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := l.Run(ctx)
	if !errors.Is(err, injected) || !strings.Contains(err.Error(), "3 events") {
		t.Fatalf("Run = %v, want an error counting 3 lost events", err)
	}
	if s := l.Stats(); s.Failed != 3 || s.QueueLen != 0 {
		t.Fatalf("Stats = %+v", s)
	}
}
