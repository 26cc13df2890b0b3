package client

import (
	"context"
	"encoding/json"
	"iter"
	"net/url"
	"strconv"
	"time"
)

// AuditEvent is one record of the hash-chained audit log. PrevHash and Hash are the
// hex strings the server sends.
type AuditEvent struct {
	Seq       int64           `json:"seq"`
	ID        string          `json:"id"`
	Time      time.Time       `json:"time"`
	Type      string          `json:"type"`
	Actor     string          `json:"actor"`
	AgentID   string          `json:"agent_id,omitempty"`
	Namespace string          `json:"namespace,omitempty"`
	Outcome   string          `json:"outcome"`
	Reason    string          `json:"reason,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`

	// Raw is the event exactly as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes an event and keeps the bytes in Raw.
func (e *AuditEvent) UnmarshalJSON(b []byte) error {
	type plain AuditEvent
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*e = AuditEvent(v)
	e.Raw = rawCopy(b)
	return nil
}

// ListAuditOptions filters GET /v1/audit. Zero fields are not sent.
type ListAuditOptions struct {
	AgentID string
	Type    string
	Outcome string
	Since   time.Time
	Until   time.Time
	Limit   int
	Cursor  string
}

func (o ListAuditOptions) query() url.Values {
	q := url.Values{}
	setIf(q, "agent_id", o.AgentID)
	setIf(q, "type", o.Type)
	setIf(q, "outcome", o.Outcome)
	setIf(q, "cursor", o.Cursor)
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	if !o.Until.IsZero() {
		q.Set("until", o.Until.UTC().Format(time.RFC3339Nano))
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	return q
}

// AuditPage is one page of GET /v1/audit. NextCursor is empty on the last page.
type AuditPage struct {
	Items      []AuditEvent `json:"items"`
	NextCursor string       `json:"next_cursor,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the page and keeps the bytes in Raw.
func (p *AuditPage) UnmarshalJSON(b []byte) error {
	type plain AuditPage
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = AuditPage(v)
	p.Raw = rawCopy(b)
	return nil
}

// AuditBreak locates the first place the audit chain fails to verify.
type AuditBreak struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
	// Detail says what was expected and what was found, when the server gives it.
	Detail string `json:"detail,omitempty"`
}

// AuditVerification is the answer of GET /v1/audit/verify. When OK is false, Broken
// names the first event that does not verify.
type AuditVerification struct {
	OK     bool        `json:"ok"`
	Events int64       `json:"events"`
	Head   string      `json:"head,omitempty"`
	Broken *AuditBreak `json:"broken,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the verification and keeps the bytes in Raw.
func (v *AuditVerification) UnmarshalJSON(b []byte) error {
	type plain AuditVerification
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*v = AuditVerification(p)
	v.Raw = rawCopy(b)
	return nil
}

// ListAudit fetches one page of audit events (GET /v1/audit), oldest first.
func (c *Client) ListAudit(ctx context.Context, opts ListAuditOptions) (*AuditPage, error) {
	var out AuditPage
	if err := c.doJSON(ctx, "GET", "/v1/audit", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllAudit iterates over every audit event matching opts, following cursors. It stops
// at the first error, which it yields once.
func (c *Client) AllAudit(ctx context.Context, opts ListAuditOptions) iter.Seq2[AuditEvent, error] {
	return func(yield func(AuditEvent, error) bool) {
		for {
			page, err := c.ListAudit(ctx, opts)
			if err != nil {
				yield(AuditEvent{}, err)
				return
			}
			for _, e := range page.Items {
				if !yield(e, nil) {
					return
				}
			}
			if page.NextCursor == "" || page.NextCursor == opts.Cursor {
				return
			}
			opts.Cursor = page.NextCursor
		}
	}
}

// VerifyAudit asks the server to verify the whole audit chain (GET /v1/audit/verify).
// A broken chain is not an error: it is a successful answer with OK false.
func (c *Client) VerifyAudit(ctx context.Context) (*AuditVerification, error) {
	var out AuditVerification
	if err := c.doJSON(ctx, "GET", "/v1/audit/verify", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
