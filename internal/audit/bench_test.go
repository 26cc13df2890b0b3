package audit

import (
	"context"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// tokenEvent is what the token endpoint records per token. Its Data map is shared by
// every op: only the Log reads it, and building it is the caller's cost, not the Log's.
func tokenEvent() Event {
	return Event{
		Type:      TypeTokenIssued,
		Actor:     "agent:agt_01jbx7q4h6m2k3n4p5r6s7t8v9",
		AgentID:   "agt_01jbx7q4h6m2k3n4p5r6s7t8v9",
		Namespace: "finance",
		Outcome:   OutcomeSuccess,
		RequestID: "01JBX7Q4H6M2K3N4P5R6S7T8V9",
		Data: map[string]any{
			"jti":   "3f1c0b7e-8a55-4a0e-9d0b-6c3e1f2a4b5c",
			"scope": "invoices:read erp:post",
			"aud":   "https://erp.example.com",
			"kid":   "es256-2025-01",
			"exp":   1735787045,
		},
	}
}

// BenchmarkEnqueue measures what auditing costs per token.
//
//   - hot path: Enqueue alone, with the queue never full (a stand-in writer empties
//     it as fast as it can): the cost on the token endpoint while the database keeps up.
//   - <store>: Enqueue from parallel goroutines through the real writer to the store,
//     until everything is committed: the sustained cost per event, which bounds the
//     tokens per second the server can audit (ns/op is wall time per event; events/s
//     is its inverse).
func BenchmarkEnqueue(b *testing.B) {
	b.Run("hot path", func(b *testing.B) {
		l := New(&memStore{}, nil, Options{})
		stop := make(chan struct{})
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			for {
				select {
				case <-stop:
					return
				case <-l.wake:
				}
				l.mu.Lock()
				clear(l.queue)
				l.queue = l.queue[:0]
				if l.space != nil {
					close(l.space)
					l.space = nil
				}
				l.mu.Unlock()
			}
		}()
		e := tokenEvent()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := l.Enqueue(e); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		close(stop)
		<-drained
	})

	stores := []struct {
		name string
		open func(b *testing.B) store.AuditLog
	}{
		{"memory", func(*testing.B) store.AuditLog { return &memStore{} }},
		{"sqlite", func(b *testing.B) store.AuditLog { return storetest.OpenSQLite(b) }},
		{"postgres", func(b *testing.B) store.AuditLog { return storetest.OpenPostgres(b) }},
	}
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			st := s.open(b)
			l := New(st, nil, Options{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			e := tokenEvent()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.Enqueue(e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			// Count the flush: an event costs nothing until it is committed.
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			if st := l.Stats(); st.Appended != uint64(b.N) || st.Failed != 0 {
				b.Fatalf("Stats = %+v, want %d appended", st, b.N)
			} else {
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
				b.ReportMetric(float64(b.N)/float64(st.Batches), "events/batch")
			}
		})
	}
}

// BenchmarkChain measures the writer's CPU per event: canonical form and hash.
func BenchmarkChain(b *testing.B) {
	l := New(&memStore{}, nil, Options{})
	e := tokenEvent()
	evs := make([]store.AuditEvent, 512)
	for i := range evs {
		evs[i] = store.AuditEvent{ID: newEventID(), Type: e.Type, Actor: e.Actor, AgentID: e.AgentID,
			Namespace: e.Namespace, Outcome: e.Outcome, RequestID: e.RequestID, Data: l.encodeData(&e)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := l.chain(store.AuditHead{}, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}

// BenchmarkVerify measures verification per event on SQLite.
func BenchmarkVerify(b *testing.B) {
	const n = 20000
	st := storetest.OpenSQLite(b)
	l := New(st, nil, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	for range n {
		if err := l.Enqueue(tokenEvent()); err != nil {
			b.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		r, err := Verify(context.Background(), st, 0)
		if err != nil || !r.OK || r.Events != n {
			b.Fatalf("Verify = %+v, %v", r, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}
