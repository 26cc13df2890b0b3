package gormstore

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoggerNeverLogsValues logs every statement as slow and checks that the values
// bound to them (here a secret setting) never reach the log.
func TestLoggerNeverLogsValues(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "log.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logAll := gormLogger{log: slog.New(slog.NewTextHandler(&buf, nil)), slow: 0}
	s.w.Logger, s.r.Logger = logAll, logAll

	const secret = "s3cr3t-hash-value"
	if err := s.PutSetting(ctx, "admin_token_hash", []byte(secret)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSetting(ctx, secret); err == nil {
		t.Fatal("GetSetting found a key that was never set")
	}
	out := buf.String()
	if !strings.Contains(out, "INSERT INTO") || !strings.Contains(out, "SELECT") {
		t.Fatalf("statements were not logged:\n%s", out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, "admin_token_hash") {
		t.Errorf("a bound value reached the log:\n%s", out)
	}
}

func TestPlaceholderRestored(t *testing.T) {
	if got := numberedPlaceholder.ReplaceAllString(`WHERE a = $1$ AND b = $12$`, "$$$1"); got != `WHERE a = $1 AND b = $12` {
		t.Errorf("got %s", got)
	}
}
