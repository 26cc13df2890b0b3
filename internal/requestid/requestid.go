// Package requestid carries the request id — the one request-scoped value Lanyard keeps in
// a context — so that every log line and audit event of a request can name it.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
)

type key struct{}

// Header is the HTTP header that carries the request id in and out.
const Header = "X-Request-Id"

// With returns ctx carrying id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// From returns the request id in ctx, or "".
func From(ctx context.Context) string {
	id, _ := ctx.Value(key{}).(string)
	return id
}

// New returns a fresh random request id (96 bits, base64url).
func New() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Valid reports whether an incoming id is safe to reuse: short, printable, no spaces.
// Anything else is replaced, so a caller cannot inject text into logs.
func Valid(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// LogHandler wraps h so every record logged with a request context gets a top-level
// request_id attribute, even when the logger has opened groups.
func LogHandler(h slog.Handler) slog.Handler { return &logHandler{inner: h, base: h} }

// logHandler keeps the handler as it was before any WithGroup (base, with the attrs
// added at top level) apart from the one records go to (inner), so the request id can
// be added at the top level: slog offers no other way to put an attribute outside the
// open groups of a record.
type logHandler struct {
	inner slog.Handler
	// base is inner without its groups; nil once attrs were added inside a group, in
	// which case base's position cannot be recovered and the id goes inside.
	base   slog.Handler
	groups []groupStep
}

// groupStep replays one WithGroup or WithAttrs call made after the first group.
type groupStep struct {
	group string
	attrs []slog.Attr
}

func (l *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.inner.Enabled(ctx, level)
}

func (l *logHandler) Handle(ctx context.Context, r slog.Record) error {
	id := From(ctx)
	if id == "" {
		return l.inner.Handle(ctx, r)
	}
	if len(l.groups) == 0 {
		r.AddAttrs(slog.String("request_id", id))
		return l.inner.Handle(ctx, r)
	}
	h := l.base.WithAttrs([]slog.Attr{slog.String("request_id", id)})
	for _, g := range l.groups {
		if g.group != "" {
			h = h.WithGroup(g.group)
		}
		if len(g.attrs) > 0 {
			h = h.WithAttrs(g.attrs)
		}
	}
	return h.Handle(ctx, r)
}

func (l *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &logHandler{inner: l.inner.WithAttrs(attrs), groups: l.groups}
	if len(l.groups) == 0 {
		n.base = l.base.WithAttrs(attrs)
	} else {
		n.base = l.base
		n.groups = append(append([]groupStep(nil), l.groups...), groupStep{attrs: attrs})
	}
	return n
}

func (l *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	return &logHandler{inner: l.inner.WithGroup(name), base: l.base,
		groups: append(append([]groupStep(nil), l.groups...), groupStep{group: name})}
}
