package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/lanyardhq/lanyard/internal/store"
)

// Reasons a chain fails verification (Break.Reason).
const (
	// ReasonHash: the event's stored hash is not the hash of its contents; the event
	// was edited (or its hash was).
	ReasonHash = "hash mismatch"
	// ReasonPrevHash: the event does not link to the event before it; an event was
	// deleted and the rest renumbered, events were reordered, or prev_hash was edited.
	// Also what an edited event whose hash was recomputed shows, one event later.
	ReasonPrevHash = "prev_hash mismatch"
	// ReasonSeqGap: a sequence number is missing; an event was deleted.
	ReasonSeqGap = "seq gap"
	// ReasonHead: the stored chain head does not name the last event; the tail was
	// truncated, or the head was edited.
	ReasonHead = "head mismatch"
)

// Report is the result of Verify.
type Report struct {
	// Events is the number of events that verified, from seq 1 up to the first break.
	Events int64
	// OK reports that the whole chain verified, head included.
	OK bool
	// Head is the hash of the last event that verified (nil for an empty log). When OK,
	// it commits to the whole chain: keep it outside the database to detect a later
	// rewrite.
	Head []byte
	// Broken is the first break in the chain; nil when OK.
	Broken *Break
}

// Break locates the first point at which the chain does not verify.
type Break struct {
	// Seq is the sequence number at which the chain breaks: the edited event, the first
	// missing one, or the event that does not link to its predecessor.
	Seq int64
	// Reason is one of the Reason constants.
	Reason string
	// Detail says what was expected and what was found, for a human.
	Detail string
}

// String formats the break for logs and the CLI.
func (b *Break) String() string {
	return fmt.Sprintf("seq %d: %s: %s", b.Seq, b.Reason, b.Detail)
}

// Verify reads the whole chain from st in Seq order, pageSize events at a time (<= 0
// selects 1000), recomputes every hash, and checks the chain head. It reports the first
// break it finds, if any, in the Report; the error is only for failures to read.
//
// Verify may run while events are being appended. It verifies the chain up to the head
// it reads first, so it finishes however fast events arrive; events appended meanwhile
// are left for the next run.
func Verify(ctx context.Context, st store.AuditLog, pageSize int) (Report, error) {
	if pageSize <= 0 {
		pageSize = 1000
	}
	var r Report
	broken := func(seq int64, reason, format string, args ...any) (Report, error) {
		r.Broken = &Break{Seq: seq, Reason: reason, Detail: fmt.Sprintf(format, args...)}
		return r, nil
	}

	// Appends commit their events and the new head together, so every event up to
	// this head is visible to the reads that follow.
	head, err := st.AuditHead(ctx)
	if err != nil {
		return r, fmt.Errorf("audit: verify: read head: %w", err)
	}

	prev := genesis
	var (
		last   int64 // seq of the last verified event
		buf    []byte
		hasher = sha256.New()
		sum    [sha256.Size]byte
	)
	for last < head.Seq {
		page, err := st.ListAudit(ctx, store.AuditFilter{AfterSeq: last, Limit: pageSize})
		if err != nil {
			return r, fmt.Errorf("audit: verify: list events after seq %d: %w", last, err)
		}
		if len(page) == 0 {
			return broken(last+1, ReasonHead, "head is at seq %d, the events end at seq %d", head.Seq, last)
		}
		for i := range page {
			e := &page[i]
			want := last + 1
			if want > head.Seq {
				break // appended after the head was read
			}
			switch {
			case e.Seq > want:
				return broken(want, ReasonSeqGap, "expected seq %d, next event is seq %d", want, e.Seq)
			case e.Seq < want:
				// The store returned events out of order or ignored the cursor.
				return broken(want, ReasonSeqGap, "expected seq %d, store returned seq %d", want, e.Seq)
			}
			if !bytes.Equal(e.PrevHash, prev) {
				return broken(want, ReasonPrevHash, "prev_hash is %s, hash of seq %d is %s",
					short(e.PrevHash), last, short(prev))
			}
			// The writer stores Data in canonical form, so for an intact event the
			// stored bytes hash as they are, which skips re-canonicalising them. (A
			// match proves they are the bytes that were hashed: anything else would
			// be a SHA-256 second preimage.) Only a mismatch needs the full canonical
			// form, which also accepts Data re-encoded with the same meaning.
			intact := false
			if buf, err = appendCanonical(buf[:0], e, true); err == nil {
				hasher.Reset()
				hasher.Write(prev)
				hasher.Write(buf)
				intact = bytes.Equal(e.Hash, hasher.Sum(sum[:0]))
			}
			if !intact {
				h, err := eventHash(prev, e)
				if err != nil {
					return broken(want, ReasonHash, "%v", err)
				}
				if !bytes.Equal(e.Hash, h) {
					return broken(want, ReasonHash, "stored hash %s, contents hash to %s", short(e.Hash), short(h))
				}
			}
			r.Events++
			r.Head = e.Hash
			prev = e.Hash
			last = e.Seq
		}
	}
	if !bytes.Equal(head.Hash, r.Head) {
		return broken(max(last, 1), ReasonHead, "head hash %s, hash of seq %d is %s", short(head.Hash), last, short(r.Head))
	}

	// An event beyond the head is either appended since the head was read, in which
	// case the head has moved past it by now, or written behind the store's back.
	beyond, err := st.ListAudit(ctx, store.AuditFilter{AfterSeq: last, Limit: 1})
	if err != nil {
		return r, fmt.Errorf("audit: verify: list events after seq %d: %w", last, err)
	}
	if len(beyond) > 0 {
		now, err := st.AuditHead(ctx)
		if err != nil {
			return r, fmt.Errorf("audit: verify: read head: %w", err)
		}
		if now.Seq < beyond[0].Seq {
			return broken(now.Seq+1, ReasonHead, "head is at seq %d, an event has seq %d", now.Seq, beyond[0].Seq)
		}
	}
	r.OK = true
	return r, nil
}

// short abbreviates a hash for a message.
func short(b []byte) string {
	if b == nil {
		return "(none)"
	}
	s := hex.EncodeToString(b)
	if len(s) > 16 {
		s = s[:16] + "…"
	}
	return s
}
