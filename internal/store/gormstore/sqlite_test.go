package gormstore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSQLiteConnections checks the settings every SQLite connection gets, the reader
// pool's refusal to write, and the database file's permissions.
func TestSQLiteConnections(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		dsn  func(dir string) string
	}{
		{"path", func(dir string) string { return filepath.Join(dir, "l.db") }},
		{"file uri", func(dir string) string { return "file:" + filepath.Join(dir, "l.db") + "?cache=private" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(ctx, tc.dsn(dir), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, "l.db"))
			if err != nil {
				t.Fatal(err)
			}
			if mode := fi.Mode().Perm(); mode != 0o600 {
				t.Errorf("database file mode %v, want 0600", mode)
			}
			want := map[string]string{
				"journal_mode": "wal",
				"foreign_keys": "1",
				"synchronous":  "1", // NORMAL
				"busy_timeout": "10000",
			}
			for i, db := range s.pools {
				for pragma, v := range want {
					var got string
					if err := db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
						t.Fatalf("pool %d: PRAGMA %s: %v", i, pragma, err)
					}
					if got != v {
						t.Errorf("pool %d: %s = %s, want %s", i, pragma, got, v)
					}
				}
			}
			if n := s.pools[0].Stats().MaxOpenConnections; n != 1 {
				t.Errorf("writer pool allows %d connections, want 1", n)
			}
			_, err = s.pools[1].ExecContext(ctx, "INSERT INTO settings (key, value) VALUES ('k', x'00')")
			if err == nil || !strings.Contains(err.Error(), "readonly") {
				t.Errorf("write through the reader pool: %v, want a read-only error", err)
			}
		})
	}
}
