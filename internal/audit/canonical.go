package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/gowebpki/jcs"

	"github.com/lanyardhq/lanyard/internal/store"
)

// timeLayout is RFC 3339 with a fixed nine-digit fraction, so that a time has exactly one
// textual form (time.RFC3339Nano drops trailing zeros, which is also unambiguous but
// harder to reproduce by hand).
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// genesis is the PrevHash of the first event.
var genesis = make([]byte, sha256.Size)

// canonicalEvent fixes the member names of the canonical object. Field order does not
// matter: RFC 8785 sorts the members.
type canonicalEvent struct {
	Seq       int64           `json:"seq"`
	ID        string          `json:"id"`
	Time      string          `json:"time"`
	Type      string          `json:"type"`
	Actor     string          `json:"actor"`
	AgentID   string          `json:"agent_id"`
	Namespace string          `json:"namespace"`
	Outcome   string          `json:"outcome"`
	Reason    string          `json:"reason"`
	Data      json.RawMessage `json:"data"`
	RequestID string          `json:"request_id"`
}

// Canonical returns the RFC 8785 canonical JSON of e that its hash commits to: every
// field except Hash and PrevHash, as described in the package doc. It fails if e.Data
// is neither empty nor a JSON object, or a string is not valid UTF-8.
func Canonical(e store.AuditEvent) ([]byte, error) {
	data, err := dataObject(e.Data)
	if err != nil {
		return nil, err
	}
	// encoding/json escapes <, >, & and U+2028/9 and would replace invalid UTF-8
	// silently; jcs.Transform undoes the escaping and we reject the invalid UTF-8
	// below, so two different stored strings can never share one canonical form.
	b, err := json.Marshal(canonicalEvent{
		Seq:       e.Seq,
		ID:        e.ID,
		Time:      e.Time.UTC().Format(timeLayout),
		Type:      e.Type,
		Actor:     e.Actor,
		AgentID:   e.AgentID,
		Namespace: e.Namespace,
		Outcome:   e.Outcome,
		Reason:    e.Reason,
		Data:      data,
		RequestID: e.RequestID,
	})
	if err != nil {
		return nil, fmt.Errorf("audit: canonical form of event %d: %w", e.Seq, err)
	}
	for _, s := range [...]string{e.ID, e.Type, e.Actor, e.AgentID, e.Namespace, e.Outcome, e.Reason, e.RequestID} {
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("audit: canonical form of event %d: string is not valid UTF-8", e.Seq)
		}
	}
	c, err := jcs.Transform(b)
	if err != nil {
		return nil, fmt.Errorf("audit: canonical form of event %d: %w", e.Seq, err)
	}
	return c, nil
}

// dataObject returns the stored Data as a JSON object, {} when empty.
func dataObject(d []byte) (json.RawMessage, error) {
	d = bytes.TrimSpace(d)
	if len(d) == 0 {
		return json.RawMessage("{}"), nil
	}
	if d[0] != '{' || !json.Valid(d) {
		return nil, errors.New("audit: event data is not a JSON object")
	}
	return d, nil
}

// chainHash returns SHA-256(prev || canonical).
func chainHash(prev, canonical []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	return h.Sum(make([]byte, 0, sha256.Size))
}

// eventHash computes the hash e must carry given the hash of its predecessor.
func eventHash(prev []byte, e *store.AuditEvent) ([]byte, error) {
	c, err := Canonical(*e)
	if err != nil {
		return nil, err
	}
	return chainHash(prev, c), nil
}

// commitTime is the form of t that is hashed and stored: UTC, to the microsecond.
func commitTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}
