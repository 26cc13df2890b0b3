package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/lanyardhq/lanyard/internal/store"
)

// ErrClosed is returned by Record and Enqueue once the Log has stopped accepting events
// (Run's context was cancelled).
var ErrClosed = errors.New("audit: log closed")

// attemptTimeout bounds one AppendAudit call, so that a hung database cannot hold the
// writer (and with it shutdown) forever.
const attemptTimeout = 30 * time.Second

// Options tunes a Log. The zero value selects the defaults.
type Options struct {
	// MaxBatch caps the number of events appended in one transaction. Default 512.
	MaxBatch int
	// FlushInterval is how long the writer lets a batch fill, counted from the arrival
	// of its first event, before it commits a batch smaller than MaxBatch. It is the
	// latency Record adds to an admin action. Default 5ms.
	FlushInterval time.Duration
	// QueueSize caps the events accepted but not yet taken by the writer; when it is
	// reached, Record and Enqueue wait. Default 16384.
	QueueSize int
	// Now returns the time stamped on events. Default time.Now.
	Now func() time.Time
	// Retries is how many times a failed append is retried before its events are
	// given up. Default 3; negative means no retry.
	Retries int
	// RetryBackoff is the wait before the first retry; each further retry waits four
	// times longer. Default 50ms (so 50ms, 200ms, 800ms with the default Retries).
	RetryBackoff time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 5 * time.Millisecond
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 16384
	}
	// A batch can never be larger than the queue it is taken from.
	o.MaxBatch = min(o.MaxBatch, o.QueueSize)
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.Retries == 0:
		o.Retries = 3
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 50 * time.Millisecond
	}
	return o
}

// Stats are counters for metrics.
type Stats struct {
	// Appended counts events committed to the chain.
	Appended uint64
	// Batches counts committed AppendAudit transactions.
	Batches uint64
	// Failed counts events given up after their batch failed every retry. Anything
	// but zero means the audit trail has a hole: alert on it.
	Failed uint64
	// QueueLen is the number of events accepted and not yet committed or given up.
	QueueLen int
}

// pending is an accepted event waiting for the writer.
type pending struct {
	ev Event
	// done receives the outcome of a Record'ed event (capacity 1, so the writer
	// never blocks on a caller that gave up waiting); nil for Enqueue'd events.
	done chan error
}

// Log appends events to the audit chain through one writer goroutine, Run, that
// commits them in batches (group commit): one transaction, and one lock of the chain
// head, per batch rather than per event.
//
// Record and Enqueue may be called from any number of goroutines, before Run starts
// (events wait in the queue) and until Run's context is cancelled; after that they
// return ErrClosed. Events are appended in the order they were accepted.
type Log struct {
	st     store.AuditLog
	logger *slog.Logger
	opts   Options

	// wake (capacity 1) tells the writer that the queue became non-empty or reached
	// MaxBatch. A token left over from an earlier signal only costs the writer one
	// extra look at the queue.
	wake chan struct{}

	mu      sync.Mutex
	queue   []pending // accepted, not yet taken by the writer
	firstAt time.Time // when queue last became non-empty
	writing int       // taken by the writer, not yet committed or given up
	closed  bool
	// space, when not nil, is closed (and reset to nil) when the writer empties the
	// queue or the log closes; producers waiting for room wait on it.
	space chan struct{}

	started  atomic.Bool
	appended atomic.Uint64
	batches  atomic.Uint64
	failed   atomic.Uint64
}

// New returns a Log that appends to st. It writes nothing until Run is called. A nil
// logger discards the Log's own diagnostics.
func New(st store.AuditLog, logger *slog.Logger, opts Options) *Log {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Log{
		st:     st,
		logger: logger,
		opts:   opts.withDefaults(),
		wake:   make(chan struct{}, 1),
	}
}

// Record appends e to the chain and returns once the batch holding it has committed,
// or with the error that made the batch fail after every retry. It is for
// administrative actions, where the caller must know the action was recorded.
//
// If ctx ends first, Record returns ctx's error; an event already accepted at that
// point stays queued and is still appended. Record returns ErrClosed if the Log no
// longer accepts events.
func (l *Log) Record(ctx context.Context, e Event) error {
	done := make(chan error, 1)
	if err := l.put(ctx, pending{ev: e, done: done}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: waiting for commit (the event stays queued): %w", ctx.Err())
	}
}

// Enqueue accepts e for appending and returns without waiting for the commit. It is
// for the token hot path: one event per token issued or refused. A nil error means
// the event will be appended, or, if its batch fails every retry, counted in
// Stats.Failed and logged at error level (without its Data).
//
// Enqueue never drops an event. When the queue is full it waits for room: an audit
// trail that silently loses events under load is one an attacker can flood to hide in,
// so the endpoints are slowed to the rate the database can record instead. QueueSize
// bounds the memory that takes. Enqueue returns ErrClosed if the Log no longer accepts
// events.
func (l *Log) Enqueue(e Event) error {
	return l.put(context.Background(), pending{ev: e})
}

// put adds p to the queue, waiting for room until ctx ends.
func (l *Log) put(ctx context.Context, p pending) error {
	if p.ev.Type == "" {
		return errors.New("audit: event has no type")
	}
	l.mu.Lock()
	for !l.closed && len(l.queue) >= l.opts.QueueSize {
		if l.space == nil {
			l.space = make(chan struct{})
		}
		space := l.space
		l.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return fmt.Errorf("audit: waiting for queue space: %w", ctx.Err())
		}
		l.mu.Lock()
	}
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.queue = append(l.queue, p)
	n := len(l.queue)
	if n == 1 {
		l.firstAt = time.Now()
	}
	l.mu.Unlock()
	if n == 1 || n == l.opts.MaxBatch {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Stats returns the Log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	q := len(l.queue) + l.writing
	l.mu.Unlock()
	return Stats{
		Appended: l.appended.Load(),
		Batches:  l.batches.Load(),
		Failed:   l.failed.Load(),
		QueueLen: q,
	}
}

// Run is the writer. It appends queued events in batches until ctx is cancelled; then
// it stops accepting events (Record and Enqueue return ErrClosed), appends everything
// already accepted, and returns. It returns nil after a clean shutdown, and an error if
// events accepted before shutdown could not be appended. Run may be called once.
//
// Store calls are not cancelled with ctx, so that the shutdown flush can finish; each
// attempt is bounded by a timeout instead. Cancel ctx only after the producers have
// stopped (the HTTP server has shut down), or their last events are refused.
func (l *Log) Run(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		return errors.New("audit: Run called more than once")
	}
	// Refuse new events as soon as ctx ends, not when the writer next looks up from a
	// commit that may take a while.
	defer context.AfterFunc(ctx, l.close)()
	storeCtx := context.WithoutCancel(ctx)
	stop := ctx.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()

	var (
		spare   []pending
		evs     []store.AuditEvent
		lost    int // events of the shutdown flush given up
		lastErr error
	)
	for {
		l.mu.Lock()
		n, first, closed := len(l.queue), l.firstAt, l.closed
		l.mu.Unlock()

		if n == 0 {
			if closed {
				break
			}
			select {
			case <-l.wake:
			case <-stop:
				l.close()
				stop = nil
			}
			continue
		}
		// Let a small batch fill for the rest of FlushInterval; a full one, or the
		// remainder at shutdown, goes now.
		if !closed && n < l.opts.MaxBatch {
			if wait := l.opts.FlushInterval - time.Since(first); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-l.wake:
					timer.Stop()
					continue
				case <-stop:
					timer.Stop()
					l.close()
					stop = nil
				}
			}
		}

		// Take the whole queue, handing the producers the buffer of the previous
		// batch, so that steady-state Enqueue does not allocate.
		l.mu.Lock()
		batch := l.queue
		l.queue = spare
		l.writing = len(batch)
		final := l.closed
		if l.space != nil {
			close(l.space)
			l.space = nil
		}
		l.mu.Unlock()

		for rest := batch; len(rest) > 0; {
			chunk := rest[:min(len(rest), l.opts.MaxBatch)]
			rest = rest[len(chunk):]
			var err error
			evs, err = l.commit(storeCtx, chunk, evs[:0])
			if err != nil && final {
				lost += len(chunk)
				lastErr = err
			}
			l.mu.Lock()
			l.writing -= len(chunk)
			l.mu.Unlock()
		}
		// Drop the references to the events (their Data maps, the waiters'
		// channels) before the buffer is reused.
		clear(batch)
		clear(evs)
		spare = batch[:0]
	}
	if lost > 0 {
		return fmt.Errorf("audit: %d events accepted before shutdown were not appended: %w", lost, lastErr)
	}
	return nil
}

// close stops the Log accepting events and wakes the producers waiting for room, who
// then return ErrClosed.
func (l *Log) close() {
	l.mu.Lock()
	l.closed = true
	if l.space != nil {
		close(l.space)
		l.space = nil
	}
	l.mu.Unlock()
}

// commit appends chunk as one batch, retrying with backoff, and reports the outcome to
// the chunk's waiters and counters. evs is scratch space, returned for reuse.
func (l *Log) commit(ctx context.Context, chunk []pending, evs []store.AuditEvent) ([]store.AuditEvent, error) {
	// Everything except the chain position is fixed once, before the first attempt,
	// so a retry appends the same events (same IDs: should an attempt that reported
	// failure have committed after all, the duplicate is recognisable).
	for i := range chunk {
		e := &chunk[i].ev
		evs = append(evs, store.AuditEvent{
			ID:        newEventID(),
			Type:      storable(e.Type),
			Actor:     storable(e.Actor),
			AgentID:   storable(e.AgentID),
			Namespace: storable(e.Namespace),
			Outcome:   storable(e.Outcome),
			Reason:    storable(e.Reason),
			RequestID: storable(e.RequestID),
			Data:      l.encodeData(e),
		})
	}

	err := l.appendWithRetry(ctx, evs)
	if err == nil {
		l.appended.Add(uint64(len(chunk)))
		l.batches.Add(1)
		for i := range chunk {
			if d := chunk[i].done; d != nil {
				d <- nil
			}
		}
		return evs, nil
	}

	err = fmt.Errorf("audit: append %d events: %w", len(chunk), err)
	l.failed.Add(uint64(len(chunk)))
	// The operator needs to know that the trail has a hole and what fell into it,
	// well enough to reconstruct it from other logs by request ID. Data stays out:
	// it is the part that may hold what the process log should not.
	l.logger.Error("audit: events lost: append failed after retries",
		"events", len(chunk), "retries", l.opts.Retries, "err", err)
	for i := range chunk {
		p := &chunk[i]
		ev := &evs[i]
		l.logger.Error("audit: event not recorded",
			slog.Group("event",
				"id", ev.ID,
				"type", ev.Type,
				"actor", ev.Actor,
				"agent_id", ev.AgentID,
				"namespace", ev.Namespace,
				"outcome", ev.Outcome,
				"reason", ev.Reason,
				"request_id", ev.RequestID,
			),
			"caller_notified", p.done != nil,
		)
		if p.done != nil {
			p.done <- err
		}
	}
	return evs, err
}

// appendWithRetry appends evs in one AppendAudit call, retrying with backoff. Each
// attempt chains the events onto the head locked by that attempt, so retrying after
// a failure (or after another replica appended meanwhile) is safe.
func (l *Log) appendWithRetry(ctx context.Context, evs []store.AuditEvent) error {
	build := func(head store.AuditHead) ([]store.AuditEvent, error) {
		if err := l.chain(head, evs); err != nil {
			return nil, err
		}
		return evs, nil
	}
	backoff := l.opts.RetryBackoff
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := l.st.AppendAudit(actx, build)
		cancel()
		if err == nil {
			return nil
		}
		if attempt >= l.opts.Retries {
			return err
		}
		l.logger.Warn("audit: append failed; retrying",
			"events", len(evs), "attempt", attempt+1, "retry_in", backoff, "err", err)
		time.Sleep(backoff)
		backoff *= 4
	}
}

// chain gives evs their place after head: sequence numbers, the commit time and the
// hashes.
func (l *Log) chain(head store.AuditHead, evs []store.AuditEvent) error {
	var prev []byte
	switch {
	case head.Seq == 0:
		prev = genesis
	case len(head.Hash) == sha256.Size:
		prev = bytes.Clone(head.Hash)
	default:
		return fmt.Errorf("audit: chain head at seq %d has a %d-byte hash", head.Seq, len(head.Hash))
	}
	t := commitTime(l.opts.Now())
	// Fresh memory on every attempt: the store may still hold the slices of a
	// failed one.
	hashes := make([]byte, len(evs)*sha256.Size)
	h := sha256.New()
	var buf []byte
	for i := range evs {
		e := &evs[i]
		e.Seq = head.Seq + int64(i) + 1
		e.Time = t
		e.PrevHash = prev
		var err error
		// encodeData made Data canonical.
		if buf, err = appendCanonical(buf[:0], e, true); err != nil {
			return err
		}
		h.Reset()
		h.Write(prev)
		h.Write(buf)
		e.Hash = h.Sum(hashes[i*sha256.Size : i*sha256.Size : (i+1)*sha256.Size])
		prev = e.Hash
	}
	return nil
}

// encodeData returns e.Data as canonical JSON. Data that cannot be encoded is a bug
// in the caller, but the event itself must not be lost for it: it is recorded with a
// marker instead of its data.
func (l *Log) encodeData(e *Event) []byte {
	if len(e.Data) == 0 {
		return []byte("{}")
	}
	b, err := appendData(nil, e.Data)
	if err != nil {
		// The error text may quote the data; leave it out.
		l.logger.Error("audit: event data is not encodable as JSON; recording the event without it",
			"type", e.Type, "request_id", e.RequestID)
		return []byte(`{"audit_error":"data not encodable as JSON"}`)
	}
	return b
}

// storable replaces what a database text column refuses (invalid UTF-8, and NUL,
// which PostgreSQL rejects) with U+FFFD. Event fields can carry attacker-chosen text
// (a client_id, a refusal detail); without this one such event would fail its whole
// batch on every retry and take the honest events with it.
func storable(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// newEventID returns "evt_" and a UUIDv7 in hex: unique, and roughly time-ordered.
func newEventID() string {
	u := uuid.Must(uuid.NewV7()) // fails only if crypto/rand does, which Go treats as fatal
	var b [4 + 32]byte
	copy(b[:], "evt_")
	hex.Encode(b[4:], u[:])
	return string(b[:])
}
