package main

import (
	"context"
	"crypto/sha256"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
)

func TestAuditVerifyThroughAPI(t *testing.T) {
	ok := true
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"GET /v1/audit/verify": func(w http.ResponseWriter, r *http.Request) {
			if ok {
				cliReply(200, `{"ok":true,"events":42,"head":"ab12"}`)(w, r)
				return
			}
			cliReply(200, `{"ok":false,"events":6,"broken":{"seq":7,"reason":"hash mismatch","detail":"stored hash aa, contents hash to bb"}}`)(w, r)
		},
	})
	stdout, _, err := cliRun(t, "audit", "verify")
	if err != nil || stdout != "audit chain OK: 42 events verified, head ab12\n" {
		t.Errorf("ok chain: %q, %v", stdout, err)
	}
	ok = false
	stdout, _, err = cliRun(t, "audit", "verify")
	if err == nil || err.Error() != "audit chain is broken at seq 7: hash mismatch: stored hash aa, contents hash to bb (6 events before it verified)" {
		t.Errorf("broken chain: err = %v", err)
	}
	if stdout != "" {
		t.Errorf("stdout for a broken chain: %q", stdout)
	}
	// --json prints the server's answer and still fails.
	stdout, _, err = cliRun(t, "audit", "verify", "--json")
	if err == nil || !strings.Contains(stdout, `"seq": 7`) {
		t.Errorf("--json broken: %v\n%s", err, stdout)
	}
}

// appendEvents appends events to st, hashing them as package audit does unless
// corrupt is set, in which case the last one carries a wrong hash.
func appendEvents(t *testing.T, st store.AuditLog, n int, corrupt bool) {
	t.Helper()
	err := st.AppendAudit(context.Background(), func(head store.AuditHead) ([]store.AuditEvent, error) {
		prev := head.Hash
		if head.Seq == 0 {
			prev = make([]byte, sha256.Size)
		}
		var evs []store.AuditEvent
		for i := range n {
			e := store.AuditEvent{
				Seq: head.Seq + 1 + int64(i), ID: "evt_" + time.Now().Format("150405.000000"),
				Time: time.Now().UTC().Truncate(time.Microsecond), Type: "agent.registered", Actor: "admin",
				AgentID: "agt_1", Outcome: "success", Data: []byte(`{}`), PrevHash: prev,
			}
			c, err := audit.Canonical(e)
			if err != nil {
				return nil, err
			}
			h := sha256.Sum256(append(append([]byte{}, prev...), c...))
			e.Hash = h[:]
			if corrupt && i == n-1 {
				e.Hash = make([]byte, sha256.Size)
			}
			evs = append(evs, e)
			prev = e.Hash
		}
		return evs, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAuditVerifyDatabase(t *testing.T) {
	dir := t.TempDir()
	st, err := gormstore.Open(context.Background(), filepath.Join(dir, "lanyard.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, st, 2, false)

	stdout, _, err := cliRun(t, "audit", "verify", "--data-dir", dir)
	if err != nil || !strings.HasPrefix(stdout, "audit chain OK: 2 events verified, head ") {
		t.Fatalf("intact chain: %q, %v", stdout, err)
	}

	appendEvents(t, st, 1, true)
	_, _, err = cliRun(t, "audit", "verify", "--database-url", filepath.Join(dir, "lanyard.db"))
	if err == nil || !strings.Contains(err.Error(), "audit chain is broken at seq 3: hash mismatch") {
		t.Fatalf("corrupted chain: %v", err)
	}

	_, _, err = cliRun(t, "audit", "verify", "--data-dir", filepath.Join(dir, "missing"))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing database: %v", err)
	}
}

func TestAuditListTable(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"GET /v1/audit": func(w http.ResponseWriter, r *http.Request) {
			if q := r.URL.Query(); q.Get("outcome") != "failure" || q.Get("since") == "" {
				t.Errorf("query = %v", q)
			}
			cliReply(200, `{"items":[{"seq":9,"id":"e9","time":"2026-01-02T03:04:05Z","type":"token.refused","actor":"agent:agt_1",
				"agent_id":"agt_1","outcome":"failure","reason":"agent is suspended","prev_hash":"aa","hash":"bb"}]}`)(w, r)
		},
	})
	stdout, _, err := cliRun(t, "audit", "list", "--outcome", "failure", "--since", "1h")
	if err != nil || !strings.Contains(stdout, "token.refused") || !strings.Contains(stdout, "agent is suspended") {
		t.Errorf("%v\n%s", err, stdout)
	}
	if _, _, err := cliRun(t, "audit", "list", "--since", "yesterday"); err == nil {
		t.Error("bad --since accepted")
	}
}
