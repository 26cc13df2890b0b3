package audit

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	_ "github.com/glebarez/sqlite"     // registers database/sql driver "sqlite"
	_ "github.com/jackc/pgx/v5/stdlib" // registers database/sql driver "pgx"

	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// tamperer changes a stored log behind the store's back, as someone with write access
// to the database would.
type tamperer interface {
	// set changes one column of the event at seq (column names as in the schema).
	set(t testing.TB, seq int64, column string, value any)
	del(t testing.TB, seq int64)
	insert(t testing.TB, e store.AuditEvent)
	setHead(t testing.TB, h store.AuditHead)
}

// backend is a store.AuditLog implementation the tests run against.
type backend struct {
	name string
	open func(t *testing.T) (store.AuditLog, tamperer)
}

var backends = []backend{
	{"memory", func(*testing.T) (store.AuditLog, tamperer) { m := &memStore{}; return m, m }},
	{"sqlite", func(t *testing.T) (store.AuditLog, tamperer) {
		return openDatabase(t, "sqlite", storetest.SQLitePath(t))
	}},
	{"postgres", func(t *testing.T) (store.AuditLog, tamperer) {
		return openDatabase(t, "pgx", storetest.PostgresDSN(t))
	}},
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, open func(t *testing.T) (store.AuditLog, tamperer))) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open) })
	}
}

// openDatabase opens a migrated gormstore at dsn, and a raw database/sql connection to
// the same database to tamper with.
func openDatabase(t *testing.T, driver, dsn string) (store.AuditLog, tamperer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := gormstore.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatalf("gormstore.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return st, &sqlTamperer{db: db, pg: driver == "pgx"}
}

// sqlTamperer tampers with raw SQL.
type sqlTamperer struct {
	db *sql.DB
	pg bool

	once sync.Once
}

// exec runs query, written with ? placeholders, after removing the append-only
// triggers: they stop the application, not the database's owner.
func (s *sqlTamperer) exec(t testing.TB, query string, args ...any) int64 {
	t.Helper()
	s.once.Do(func() {
		stmts := []string{
			"DROP TRIGGER audit_events_no_update",
			"DROP TRIGGER audit_events_no_delete",
		}
		if s.pg {
			stmts = []string{"ALTER TABLE audit_events DISABLE TRIGGER USER"}
		}
		for _, q := range stmts {
			if _, err := s.db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	})
	if s.pg {
		n := 0
		var b []byte
		for i := 0; i < len(query); i++ {
			if query[i] == '?' {
				n++
				b = fmt.Appendf(b, "$%d", n)
				continue
			}
			b = append(b, query[i])
		}
		query = string(b)
	}
	res, err := s.db.Exec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (s *sqlTamperer) set(t testing.TB, seq int64, column string, value any) {
	t.Helper()
	if tm, ok := value.(time.Time); ok {
		value = tm.UTC()
	}
	if n := s.exec(t, fmt.Sprintf(`UPDATE audit_events SET %q = ? WHERE seq = ?`, column), value, seq); n != 1 {
		t.Fatalf("set %s of seq %d: %d rows changed", column, seq, n)
	}
}

func (s *sqlTamperer) del(t testing.TB, seq int64) {
	t.Helper()
	if n := s.exec(t, `DELETE FROM audit_events WHERE seq = ?`, seq); n != 1 {
		t.Fatalf("delete seq %d: %d rows deleted", seq, n)
	}
}

func (s *sqlTamperer) insert(t testing.TB, e store.AuditEvent) {
	t.Helper()
	s.exec(t, `INSERT INTO audit_events (seq, id, "time", type, actor, agent_id, namespace, outcome, reason, data, request_id, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.ID, e.Time.UTC(), e.Type, e.Actor, e.AgentID, e.Namespace, e.Outcome, e.Reason, e.Data, e.RequestID, e.PrevHash, e.Hash)
}

func (s *sqlTamperer) setHead(t testing.TB, h store.AuditHead) {
	t.Helper()
	if n := s.exec(t, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, h.Seq, h.Hash); n != 1 {
		t.Fatalf("set head: %d rows changed", n)
	}
}

// faultyStore makes AppendAudit fail after build has run, inside the real transaction,
// so the store rolls it back: a commit that failed.
type faultyStore struct {
	store.AuditLog
	err error

	mu       sync.Mutex
	failNext int
	calls    int
}

func (f *faultyStore) AppendAudit(ctx context.Context, build func(store.AuditHead) ([]store.AuditEvent, error)) error {
	f.mu.Lock()
	f.calls++
	fail := f.failNext > 0
	if fail {
		f.failNext--
	}
	f.mu.Unlock()
	if !fail {
		return f.AuditLog.AppendAudit(ctx, build)
	}
	return f.AuditLog.AppendAudit(ctx, func(h store.AuditHead) ([]store.AuditEvent, error) {
		if _, err := build(h); err != nil {
			return nil, err
		}
		return nil, f.err
	})
}

func (f *faultyStore) failAppends(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = n
}

func (f *faultyStore) appendCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}
