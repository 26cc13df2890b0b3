package requestid

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"generated", New(), true},
		{"uuid", "0b7c5e2e-6f1a-4c1d-9a39-6a3c0f6e3b52", true},
		{"base64url with dots", "req_abc.DEF-123", true},
		{"one character", "a", true},
		{"64 characters", strings.Repeat("a", 64), true},
		{"empty", "", false},
		{"65 characters", strings.Repeat("a", 65), false},
		{"space", "abc def", false},
		{"leading space", " abc", false},
		{"newline", "abc\ndef", false},
		{"carriage return", "abc\r", false},
		{"tab", "abc\tdef", false},
		{"NUL", "abc\x00", false},
		{"escape sequence", "\x1b[31mred", false},
		{"quote", `abc"def`, false},
		{"equals (log key injection)", "abc request_id=forged", false},
		{"slash", "a/b", false},
		{"plus", "a+b", false},
		{"unicode letter", "café", false},
		{"unicode digit", "١٢٣", false},
		{"fullwidth letters", "ａｂｃ", false},
		{"line separator", "a\u2028b", false},
		{"invalid UTF-8", "a\xffb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Valid(tt.id); got != tt.want {
				t.Errorf("Valid(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		if len(id) != 16 || !Valid(id) {
			t.Fatalf("New() = %q: want 16 characters that Valid accepts", id)
		}
		if seen[id] {
			t.Fatalf("New() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestWithFrom(t *testing.T) {
	if got := From(context.Background()); got != "" {
		t.Errorf("From(empty context) = %q", got)
	}
	ctx := With(context.Background(), "req-1")
	if got := From(ctx); got != "req-1" {
		t.Errorf("From = %q, want req-1", got)
	}
	if got := From(With(ctx, "req-2")); got != "req-2" {
		t.Errorf("inner With: From = %q, want req-2", got)
	}
	// Only this package's key carries the id.
	type otherKey struct{}
	if got := From(context.WithValue(context.Background(), otherKey{}, "x")); got != "" {
		t.Errorf("From picked up another key's value %q", got)
	}
}

// logLine logs one record through LogHandler(JSON) and returns it decoded.
func logLine(t *testing.T, ctx context.Context, build func(h slog.Handler) *slog.Logger) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	log := build(LogHandler(slog.NewJSONHandler(&buf, nil)))
	log.InfoContext(ctx, "hello", "k", "v")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("log line %q: %v", buf.String(), err)
	}
	return m
}

func TestLogHandler(t *testing.T) {
	ctx := With(context.Background(), "req-42")
	plain := func(h slog.Handler) *slog.Logger { return slog.New(h) }

	t.Run("adds request_id", func(t *testing.T) {
		m := logLine(t, ctx, plain)
		if m["request_id"] != "req-42" || m["k"] != "v" || m["msg"] != "hello" {
			t.Errorf("log line %v; want request_id req-42 beside the record's own attributes", m)
		}
	})
	t.Run("no id, no attribute", func(t *testing.T) {
		m := logLine(t, context.Background(), plain)
		if _, ok := m["request_id"]; ok {
			t.Errorf("log line %v has a request_id without a request", m)
		}
	})
	t.Run("kept through With", func(t *testing.T) {
		m := logLine(t, ctx, func(h slog.Handler) *slog.Logger { return slog.New(h).With("component", "oauth") })
		if m["request_id"] != "req-42" || m["component"] != "oauth" {
			t.Errorf("log line %v; want request_id and component", m)
		}
	})
	t.Run("kept through WithGroup", func(t *testing.T) {
		m := logLine(t, ctx, func(h slog.Handler) *slog.Logger { return slog.New(h).WithGroup("g") })
		if m["request_id"] == "req-42" {
			return
		}
		if g, _ := m["g"].(map[string]any); g["request_id"] == "req-42" {
			t.Fatal("regression of a fixed bug: requestid.go logHandler.Handle adds request_id to the record, so under WithGroup it is logged as g.request_id, not at the top level where log queries look for it")
		}
		t.Errorf("log line %v has no request_id", m)
	})
	t.Run("Enabled follows the wrapped handler", func(t *testing.T) {
		h := LogHandler(slog.NewJSONHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if h.Enabled(ctx, slog.LevelInfo) || !h.Enabled(ctx, slog.LevelWarn) {
			t.Error("LogHandler changed the level filter")
		}
	})
}
