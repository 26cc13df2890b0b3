package audit

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// memStore is an in-memory store.AuditLog: a mutex and a slice, with the same
// contract as the database implementations (AppendAudit is all-or-nothing under the
// lock; results are copies). It also checks what the store cannot check on its own
// behalf, that build continues the head, so a chaining bug fails loudly here.
type memStore struct {
	mu     sync.Mutex
	events []store.AuditEvent
	head   store.AuditHead

	// gate, if set, is received from at the start of each AppendAudit, so a test can
	// hold the writer inside a commit.
	gate chan struct{}
}

var _ store.AuditLog = (*memStore)(nil)

func (m *memStore) AppendAudit(ctx context.Context, build func(store.AuditHead) ([]store.AuditEvent, error)) error {
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	head := store.AuditHead{Seq: m.head.Seq, Hash: bytes.Clone(m.head.Hash)}
	evs, err := build(head)
	if err != nil {
		return err
	}
	prev := head
	for _, e := range evs {
		if e.Seq != prev.Seq+1 {
			return fmt.Errorf("memstore: event seq %d does not follow %d", e.Seq, prev.Seq)
		}
		if prev.Seq > 0 && !bytes.Equal(e.PrevHash, prev.Hash) {
			return fmt.Errorf("memstore: event %d prev_hash does not match head", e.Seq)
		}
		prev = store.AuditHead{Seq: e.Seq, Hash: e.Hash}
	}
	for _, e := range evs {
		m.events = append(m.events, cloneEvent(e))
	}
	m.head = store.AuditHead{Seq: prev.Seq, Hash: bytes.Clone(prev.Hash)}
	return nil
}

func (m *memStore) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	// Sorted like ORDER BY seq, so that tests may tamper with the order.
	sorted := slices.Clone(m.events)
	slices.SortStableFunc(sorted, func(a, b store.AuditEvent) int { return int(a.Seq - b.Seq) })
	var out []store.AuditEvent
	for _, e := range sorted {
		switch {
		case e.Seq <= f.AfterSeq,
			f.AgentID != "" && e.AgentID != f.AgentID,
			f.Type != "" && e.Type != f.Type,
			f.Outcome != "" && e.Outcome != f.Outcome,
			!f.Since.IsZero() && e.Time.Before(f.Since),
			!f.Until.IsZero() && !e.Time.Before(f.Until):
			continue
		}
		out = append(out, cloneEvent(e))
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

func (m *memStore) AuditHead(ctx context.Context) (store.AuditHead, error) {
	if err := ctx.Err(); err != nil {
		return store.AuditHead{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return store.AuditHead{Seq: m.head.Seq, Hash: bytes.Clone(m.head.Hash)}, nil
}

func cloneEvent(e store.AuditEvent) store.AuditEvent {
	e.Data = bytes.Clone(e.Data)
	e.PrevHash = bytes.Clone(e.PrevHash)
	e.Hash = bytes.Clone(e.Hash)
	return e
}

// The tamperer methods change the stored log as an attacker with write access to the
// database would.

func (m *memStore) set(t testing.TB, seq int64, column string, value any) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.find(t, seq)
	switch column {
	case "id":
		e.ID = value.(string)
	case "time":
		e.Time = value.(time.Time)
	case "type":
		e.Type = value.(string)
	case "actor":
		e.Actor = value.(string)
	case "agent_id":
		e.AgentID = value.(string)
	case "namespace":
		e.Namespace = value.(string)
	case "outcome":
		e.Outcome = value.(string)
	case "reason":
		e.Reason = value.(string)
	case "data":
		e.Data = value.([]byte)
	case "request_id":
		e.RequestID = value.(string)
	case "prev_hash":
		e.PrevHash = value.([]byte)
	case "hash":
		e.Hash = value.([]byte)
	case "seq":
		e.Seq = value.(int64)
	default:
		t.Fatalf("memstore: no column %q", column)
	}
}

func (m *memStore) del(t testing.TB, seq int64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.find(t, seq)
	m.events = slices.DeleteFunc(m.events, func(e store.AuditEvent) bool { return e.Seq == seq })
}

func (m *memStore) insert(t testing.TB, e store.AuditEvent) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, cloneEvent(e))
}

func (m *memStore) setHead(t testing.TB, h store.AuditHead) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.head = store.AuditHead{Seq: h.Seq, Hash: bytes.Clone(h.Hash)}
}

func (m *memStore) find(t testing.TB, seq int64) *store.AuditEvent {
	t.Helper()
	for i := range m.events {
		if m.events[i].Seq == seq {
			return &m.events[i]
		}
	}
	t.Fatalf("memstore: no event %d", seq)
	return nil
}
