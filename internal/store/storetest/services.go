package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lanyardhq/lanyard/internal/store/gormstore"
)

// Environment variables read by the helpers.
const (
	// PostgresURLEnv names the PostgreSQL server the tests use (a postgres:// URL).
	PostgresURLEnv = "LANYARD_TEST_POSTGRES_URL"
	// RequireServicesEnv, set to 1, turns a missing test service into a failure rather
	// than a skip (CI sets it so that a dead database cannot pass silently).
	RequireServicesEnv = "LANYARD_REQUIRE_SERVICES"

	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// PostgresDSN returns a DSN for a new, empty schema on the test PostgreSQL server
// ($LANYARD_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test). The
// schema has a random name and is dropped (CASCADE) when the test ends; the DSN sets
// search_path to it, so every connection opened with it sees only this test's tables.
//
// If the server does not answer within a few seconds the test is skipped, or fails
// when LANYARD_REQUIRE_SERVICES=1.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresURLEnv)
	if base == "" {
		base = defaultPostgresURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("storetest: %s must be a postgres:// URL", PostgresURLEnv)
	}
	where := u.Redacted()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		unavailable(t, "PostgreSQL not reachable at %s (%v); set %s or start it", where, err, PostgresURLEnv)
	}
	defer conn.Close(context.Background())

	schema := "lanyard_test_" + randomHex(8)
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		t.Fatalf("storetest: create schema %s on %s: %v", schema, where, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("storetest: drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP SCHEMA "+ident+" CASCADE"); err != nil {
			t.Errorf("storetest: drop schema %s: %v", schema, err)
		}
	})

	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// SQLitePath returns the path of a new SQLite database file in t.TempDir().
func SQLitePath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "lanyard.db")
}

// OpenSQLite opens a migrated store on a new SQLite file; it is closed when the test ends.
func OpenSQLite(t testing.TB) *gormstore.Store {
	t.Helper()
	return openMigrated(t, SQLitePath(t))
}

// OpenPostgres opens a migrated store on a new PostgreSQL schema (see PostgresDSN); it
// is closed, and the schema dropped, when the test ends.
func OpenPostgres(t testing.TB) *gormstore.Store {
	t.Helper()
	return openMigrated(t, PostgresDSN(t))
}

func openMigrated(t testing.TB, dsn string) *gormstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := gormstore.Open(ctx, dsn, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatalf("storetest: open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("storetest: close: %v", err)
		}
	})
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("storetest: migrate: %v", err)
	}
	return s
}

// unavailable skips the test, or fails it when services are required.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireServicesEnv) == "1" {
		t.Fatalf("storetest: "+format+" ("+RequireServicesEnv+"=1)", args...)
	}
	t.Skipf("storetest: SKIPPING: "+format, args...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand.Read does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// testWriter sends the store's warnings to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
