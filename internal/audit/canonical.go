package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
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

// Canonical returns the RFC 8785 canonical JSON of e that its hash commits to: every
// field except Hash and PrevHash, as described in the package doc. It fails if e.Data
// is neither empty nor a JSON object, a string is not valid UTF-8, or Seq is beyond
// the integers a JSON number represents exactly (2^53).
func Canonical(e store.AuditEvent) ([]byte, error) {
	return appendCanonical(nil, &e, false)
}

// maxSafeInteger is the largest integer RFC 8785 (IEEE 754 doubles) represents exactly.
const maxSafeInteger = 1<<53 - 1

// appendCanonical appends the canonical form of e to dst. dataCanonical says e.Data is
// known to be in canonical form already (the writer made it so); Verify never says so.
//
// The envelope is written directly rather than through a generic RFC 8785
// implementation: its members are fixed and their order is known, and the writer
// hashes every event, so the generic parse-and-reserialise would cost the hot path a
// few times more CPU than everything else together. The result is the same bytes;
// FuzzCanonicalMatchesJCS checks that against github.com/gowebpki/jcs.
func appendCanonical(dst []byte, e *store.AuditEvent, dataCanonical bool) ([]byte, error) {
	data := e.Data
	if !dataCanonical {
		var err error
		if data, err = canonicalData(e.Data); err != nil {
			return nil, fmt.Errorf("audit: canonical form of event %d: %w", e.Seq, err)
		}
	} else if len(data) == 0 {
		data = emptyObject
	}
	if e.Seq > maxSafeInteger || e.Seq < -maxSafeInteger {
		return nil, fmt.Errorf("audit: canonical form of event %d: seq is not exactly representable", e.Seq)
	}
	// Members in RFC 8785 order: sorted by their UTF-16 code units (all ASCII here).
	var err error
	dst = append(dst, `{"actor":`...)
	dst, err = appendString(dst, e.Actor, err)
	dst = append(dst, `,"agent_id":`...)
	dst, err = appendString(dst, e.AgentID, err)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	dst = append(dst, `,"id":`...)
	dst, err = appendString(dst, e.ID, err)
	dst = append(dst, `,"namespace":`...)
	dst, err = appendString(dst, e.Namespace, err)
	dst = append(dst, `,"outcome":`...)
	dst, err = appendString(dst, e.Outcome, err)
	dst = append(dst, `,"reason":`...)
	dst, err = appendString(dst, e.Reason, err)
	dst = append(dst, `,"request_id":`...)
	dst, err = appendString(dst, e.RequestID, err)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, e.Seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = e.Time.UTC().AppendFormat(dst, timeLayout)
	dst = append(dst, `","type":`...)
	dst, err = appendString(dst, e.Type, err)
	dst = append(dst, '}')
	if err != nil {
		return nil, fmt.Errorf("audit: canonical form of event %d: %w", e.Seq, err)
	}
	return dst, nil
}

var emptyObject = []byte("{}")

// canonicalData returns stored Data as a canonical JSON object, {} when empty.
func canonicalData(d []byte) ([]byte, error) {
	if len(bytes.TrimSpace(d)) == 0 {
		return emptyObject, nil
	}
	c, err := jcs.Transform(d)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if c[0] != '{' {
		return nil, errors.New("data is not a JSON object")
	}
	return c, nil
}

// appendString appends s as an RFC 8785 string: '"' and '\' escaped, the control
// characters escaped (the five with short forms as \b \t \n \f \r, the rest as
// \u00xx in lower case), everything else, non-ASCII included, as it is. s must be
// valid UTF-8. err is passed through so the caller can check once.
func appendString(dst []byte, s string, err error) ([]byte, error) {
	if err == nil && !utf8.ValidString(s) {
		err = errors.New("string is not valid UTF-8")
	}
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), err
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
	c, err := appendCanonical(nil, e, false)
	if err != nil {
		return nil, err
	}
	return chainHash(prev, c), nil
}

// commitTime is the form of t that is hashed and stored: UTC, to the microsecond.
func commitTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}
