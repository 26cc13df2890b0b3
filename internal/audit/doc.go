// Package audit provides Lanyard's tamper-evident audit log: an append-only chain of
// events in which every event commits to the one before it, a group-committing writer
// that appends to that chain without slowing the token endpoint down, and a verifier
// that reads the chain back and names the first event at which it was altered.
//
// # What an event commits to
//
// Each stored event (store.AuditEvent) carries a sequence number Seq (1, 2, 3, … with no
// gaps), the hash of the previous event PrevHash, and its own Hash:
//
//	Hash = SHA-256(PrevHash || Canonical(event))
//
// where || is byte concatenation, the first event's PrevHash is 32 zero bytes, and
// Canonical(event) is the RFC 8785 (JSON Canonicalization Scheme) serialisation of this
// JSON object, built from every field of the event except Hash and PrevHash:
//
//	{
//	  "actor":      string,
//	  "agent_id":   string,
//	  "data":       object,  // the event's Data column; an empty column is {}
//	  "id":         string,
//	  "namespace":  string,
//	  "outcome":    string,
//	  "reason":     string,
//	  "request_id": string,
//	  "seq":        number,
//	  "time":       string,  // UTC, RFC 3339 with exactly nine fractional digits,
//	                         // e.g. "2025-01-02T03:04:05.123456000Z"
//	  "type":       string
//	}
//
// All members are always present (empty strings included). RFC 8785 fixes key order,
// whitespace, string escaping and number formatting, so the hash can be recomputed
// with standard tools and any RFC 8785 implementation; for example, for event n with
// the canonical JSON in event.json and the previous event's hash in prev.hex:
//
//	{ xxd -r -p prev.hex; cat event.json; } | sha256sum
//
// Times are truncated to microseconds before they are hashed, because that is what
// PostgreSQL stores. Data is stored already in canonical form; the hash commits to its
// meaning, not its bytes, so Data re-encoded without changing its meaning still verifies.
// Numbers inside Data are IEEE 754 doubles, as RFC 8785 requires: record identifiers and
// other large integers belong in strings.
//
// ID is "evt_" and a UUIDv7 in hex, fixed before the first attempt to append the event;
// Time is when the batch holding the event was committed (under the head lock, so times
// follow Seq order as far as the servers' clocks agree).
//
// # What verification proves, and what it does not
//
// Verify recomputes every hash in Seq order and checks that the chain has no gap and
// that the stored chain head (the record AppendAudit locks, read with AuditHead) names
// the last event. Editing, deleting, inserting or reordering any event is therefore
// detected — unless the attacker also rewrites every later event and the head, which
// anyone with write access to the database can do. The chain makes tampering evident
// only relative to a head the attacker cannot rewrite: export Report.Head (with
// Report.Events) periodically to a system outside the database's trust boundary — a
// SIEM, a transparency log, a signed message — and check later that the chain still
// passes through it.
//
// # Writing
//
// A Log has one writer goroutine (Log.Run) that collects events into batches and appends
// each batch in one store transaction under the locked chain head, so several Lanyard
// replicas sharing one database extend a single chain. Log.Record waits until the event
// has committed and is meant for administrative actions; Log.Enqueue only queues the
// event and is meant for the token hot path. Neither drops events: when the queue is
// full, both wait.
package audit
