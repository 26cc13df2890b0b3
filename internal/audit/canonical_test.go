package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gowebpki/jcs"

	"github.com/lanyardhq/lanyard/internal/store"
)

// knownEvent is the event of the known-answer test. Its Data is deliberately not in
// canonical form, and its time not in UTC.
func knownEvent() store.AuditEvent {
	return store.AuditEvent{
		Seq:       42,
		ID:        "evt_0192a0b0c0d07000800000000000abcd",
		Time:      time.Date(2025, 1, 2, 4, 4, 5, 123456000, time.FixedZone("CET", 3600)),
		Type:      TypeTokenRefused,
		Actor:     "agent:agt_1",
		AgentID:   "agt_1",
		Namespace: "finance",
		Outcome:   OutcomeFailure,
		Reason:    "assertion expired <&>\n",
		Data:      []byte(` { "b": 2.0, "a": "\u00e9\u2028" } `),
		RequestID: "req-1",
		PrevHash:  bytes.Repeat([]byte{0x11}, 32),
	}
}

// TestCanonicalKnownAnswer pins the canonical form and hash to values computed
// independently, with Python:
//
//	c = json.dumps(obj, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode()
//	hashlib.sha256(b'\x11' * 32 + c).hexdigest()
//
// (for this object, with ASCII keys and an integer, that is RFC 8785).
func TestCanonicalKnownAnswer(t *testing.T) {
	const (
		wantCanonical = `{"actor":"agent:agt_1","agent_id":"agt_1","data":{"a":"é` + "\u2028" + `","b":2},` +
			`"id":"evt_0192a0b0c0d07000800000000000abcd","namespace":"finance","outcome":"failure",` +
			`"reason":"assertion expired <&>\n","request_id":"req-1","seq":42,` +
			`"time":"2025-01-02T03:04:05.123456000Z","type":"token.refused"}`
		wantHash = "33fa6a2bcfdda493b0d456c93929a017787676be708075dd83a4c429c39eab80"
	)
	e := knownEvent()
	c, err := Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	if string(c) != wantCanonical {
		t.Fatalf("Canonical:\n got %s\nwant %s", c, wantCanonical)
	}
	h, err := eventHash(e.PrevHash, &e)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h); got != wantHash {
		t.Fatalf("hash %s, want %s", got, wantHash)
	}
}

func TestCanonicalCoversEveryField(t *testing.T) {
	base, err := Canonical(knownEvent())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		edit    func(e *store.AuditEvent)
		changes bool
	}{
		{"seq", func(e *store.AuditEvent) { e.Seq++ }, true},
		{"id", func(e *store.AuditEvent) { e.ID += "x" }, true},
		{"time", func(e *store.AuditEvent) { e.Time = e.Time.Add(time.Microsecond) }, true},
		{"type", func(e *store.AuditEvent) { e.Type = TypeTokenIssued }, true},
		{"actor", func(e *store.AuditEvent) { e.Actor = ActorAdmin }, true},
		{"agent_id", func(e *store.AuditEvent) { e.AgentID = "agt_2" }, true},
		{"namespace", func(e *store.AuditEvent) { e.Namespace = "hr" }, true},
		{"outcome", func(e *store.AuditEvent) { e.Outcome = OutcomeSuccess }, true},
		{"reason", func(e *store.AuditEvent) { e.Reason = "" }, true},
		{"data value", func(e *store.AuditEvent) { e.Data = []byte(`{"a":"é` + "\u2028" + `","b":3}`) }, true},
		{"data member added", func(e *store.AuditEvent) { e.Data = []byte(`{"a":"é` + "\u2028" + `","b":2,"c":null}`) }, true},
		{"request_id", func(e *store.AuditEvent) { e.RequestID = "req-2" }, true},
		{"time zone only", func(e *store.AuditEvent) { e.Time = e.Time.UTC() }, false},
		{"data formatting only", func(e *store.AuditEvent) { e.Data = []byte(`{"a":"\u00e9\u2028","b":2e0}`) }, false},
		{"hash is not covered", func(e *store.AuditEvent) { e.Hash = []byte{1} }, false},
		{"prev_hash is not covered", func(e *store.AuditEvent) { e.PrevHash = nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := knownEvent()
			tt.edit(&e)
			c, err := Canonical(e)
			if err != nil {
				t.Fatal(err)
			}
			if changed := !bytes.Equal(c, base); changed != tt.changes {
				t.Fatalf("canonical form changed = %v, want %v:\n%s", changed, tt.changes, c)
			}
		})
	}
}

func TestCanonicalEmptyData(t *testing.T) {
	for _, data := range [][]byte{nil, {}, []byte("  "), []byte("{}")} {
		c, err := Canonical(store.AuditEvent{Seq: 1, Data: data})
		if err != nil {
			t.Fatalf("data %q: %v", data, err)
		}
		if !bytes.Contains(c, []byte(`"data":{}`)) {
			t.Fatalf("data %q: canonical %s lacks an empty object", data, c)
		}
	}
}

func TestCanonicalRejects(t *testing.T) {
	tests := []struct {
		name string
		edit func(e *store.AuditEvent)
	}{
		{"data is an array", func(e *store.AuditEvent) { e.Data = []byte(`[1]`) }},
		{"data is a string", func(e *store.AuditEvent) { e.Data = []byte(`"x"`) }},
		{"data is null", func(e *store.AuditEvent) { e.Data = []byte(`null`) }},
		{"data is truncated", func(e *store.AuditEvent) { e.Data = []byte(`{"a":1`) }},
		{"data has two values", func(e *store.AuditEvent) { e.Data = []byte(`{}{}`) }},
		{"data has a duplicate key", func(e *store.AuditEvent) { e.Data = []byte(`{"a":1,"a":2}`) }},
		{"data has invalid UTF-8", func(e *store.AuditEvent) { e.Data = []byte("{\"a\":\"\xff\"}") }},
		{"data has a lone surrogate", func(e *store.AuditEvent) { e.Data = []byte(`{"a":"\udc00"}`) }},
		{"reason has invalid UTF-8", func(e *store.AuditEvent) { e.Reason = "\xff" }},
		{"actor has invalid UTF-8", func(e *store.AuditEvent) { e.Actor = "a\xc3" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := knownEvent()
			tt.edit(&e)
			if c, err := Canonical(e); err == nil {
				t.Fatalf("Canonical accepted it: %s", c)
			}
		})
	}
}

// FuzzCanonical feeds Canonical what a tampered database row may hold: Verify must
// never panic on it, and whatever it accepts must be canonical (a fixed point).
func FuzzCanonical(f *testing.F) {
	f.Add([]byte(`{"a":1}`), "reason")
	f.Add([]byte(` { "b": 2.0, "a": "\u00e9\u2028" } `), "x\n")
	f.Add([]byte(`{"n":1e400}`), "")
	f.Add([]byte(`{"a":[{},[],"\ud83d\ude00"]}`), "\xff")
	f.Fuzz(func(t *testing.T, data []byte, reason string) {
		e := knownEvent()
		e.Data, e.Reason = data, reason
		c, err := Canonical(e)
		if err != nil {
			return
		}
		var obj struct{ Data json.RawMessage }
		if err := json.Unmarshal(c, &obj); err != nil {
			t.Fatalf("canonical form is not JSON: %v\n%s", err, c)
		}
		e.Data = obj.Data
		c2, err := Canonical(e)
		if err != nil || !bytes.Equal(c, c2) {
			t.Fatalf("not a fixed point: %v\n%s\n%s", err, c, c2)
		}
	})
}

func ExampleCanonical() {
	e := store.AuditEvent{
		Seq:       1,
		ID:        "evt_01",
		Time:      time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Type:      TypeAgentSuspended,
		Actor:     ActorAdmin,
		AgentID:   "agt_1",
		Namespace: "finance",
		Outcome:   OutcomeSuccess,
		Reason:    "incident 42",
		Data:      []byte(`{"to":"suspended","from":"active"}`),
		RequestID: "req-1",
	}
	c, _ := Canonical(e)
	fmt.Println(string(c))
	// Output:
	// {"actor":"admin","agent_id":"agt_1","data":{"from":"active","to":"suspended"},"id":"evt_01","namespace":"finance","outcome":"success","reason":"incident 42","request_id":"req-1","seq":1,"time":"2025-01-02T03:04:05.000000000Z","type":"agent.suspended"}
}

// referenceCanonical is the canonical form computed the obvious way: the JSON object
// through a generic RFC 8785 implementation.
func referenceCanonical(e store.AuditEvent) ([]byte, error) {
	data := bytes.TrimSpace(e.Data)
	if len(data) == 0 {
		data = []byte("{}")
	}
	b, err := json.Marshal(struct {
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
	}{e.Seq, e.ID, e.Time.UTC().Format(timeLayout), e.Type, e.Actor, e.AgentID, e.Namespace, e.Outcome, e.Reason, data, e.RequestID})
	if err != nil {
		return nil, err
	}
	return jcs.Transform(b)
}

// FuzzCanonicalMatchesJCS checks the hand-written envelope against a generic RFC 8785
// implementation, on every string a field can hold.
func FuzzCanonicalMatchesJCS(f *testing.F) {
	f.Add(int64(1), "agent:agt_1", "assertion expired <&>\n\x00\x1f\x7f\u2028", "evt_1", []byte(`{"b":2.0,"a":"\u00e9"}`), int64(0))
	f.Add(int64(1<<53-1), "\"quoted\" \\ back", "\b\f\r\t", "", []byte(` {"x":[1e21,1e-7,-0]} `), int64(1<<62))
	f.Add(int64(-5), "\xff", "\U0001F600", "\ufeff", []byte(`[]`), int64(-1))
	f.Fuzz(func(t *testing.T, seq int64, actor, reason, id string, data []byte, nanos int64) {
		e := knownEvent()
		e.Seq, e.Actor, e.Reason, e.ID, e.Data = seq, actor, reason, id, data
		e.Time = time.Unix(0, nanos)
		got, err := Canonical(e)
		if err != nil {
			// Refusals the reference does not make: it replaces invalid UTF-8, and
			// accepts any JSON value as data and any seq.
			return
		}
		if !utf8.ValidString(actor + reason + id) {
			t.Fatalf("accepted invalid UTF-8")
		}
		want, err := referenceCanonical(e)
		if err != nil {
			t.Fatalf("reference refused what Canonical accepted: %v\n%s", err, got)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("canonical forms differ:\n got %q\nwant %q", got, want)
		}
	})
}
