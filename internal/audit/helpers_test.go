package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// running is a Log whose writer runs until stop.
type running struct {
	*Log
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start builds a Log on st and runs its writer; the writer is stopped at the end of
// the test if the test has not stopped it.
func start(t testing.TB, st store.AuditLog, logger *slog.Logger, opts Options) *running {
	t.Helper()
	r := &running{Log: New(st, logger, opts), done: make(chan error, 1)}
	r.run(t)
	return r
}

func (r *running) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop() })
}

// stop cancels the writer and returns what Run returned.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(30 * time.Second):
			r.err = errors.New("Run did not return within 30s of cancellation")
		}
	})
	return r.err
}

// listAll reads the whole log in Seq order.
func listAll(t testing.TB, st store.AuditLog) []store.AuditEvent {
	t.Helper()
	var all []store.AuditEvent
	for {
		var after int64
		if len(all) > 0 {
			after = all[len(all)-1].Seq
		}
		page, err := st.ListAudit(context.Background(), store.AuditFilter{AfterSeq: after, Limit: 1000})
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
	}
}

// mustVerify verifies st and fails the test unless the chain is intact with n events.
func mustVerify(t testing.TB, st store.AuditLog, n int64) Report {
	t.Helper()
	r, err := Verify(context.Background(), st, 0)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !r.OK || r.Broken != nil {
		t.Fatalf("Verify: chain broken: %v", r.Broken)
	}
	if r.Events != n {
		t.Fatalf("Verify: %d events, want %d", r.Events, n)
	}
	return r
}

// waitFor waits for cond to hold, failing the test after 10s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// seed appends n events through a Log with small batches, so the chain spans several
// transactions. Event i (1-based) has Data {"n": i}.
func seed(t testing.TB, st store.AuditLog, n int) {
	t.Helper()
	l := start(t, st, nil, Options{MaxBatch: 3, FlushInterval: time.Millisecond})
	for i := 1; i <= n; i++ {
		if err := l.Enqueue(testEvent(i)); err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
	if err := l.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func testEvent(i int) Event {
	return Event{
		Type:      TypeTokenIssued,
		Actor:     fmt.Sprintf("agent:agt_%d", i),
		AgentID:   fmt.Sprintf("agt_%d", i),
		Namespace: "finance",
		Outcome:   OutcomeSuccess,
		Reason:    "",
		RequestID: fmt.Sprintf("req-%d", i),
		Data:      map[string]any{"n": i, "scope": "invoices:read"},
	}
}
