// Package secrets defines where Lanyard keeps its secret material (token signing keys,
// and later agent credentials): a small, versioned key/value Backend, shaped after
// HashiCorp Vault's KV v2 engine so that both the local encrypted implementation
// (package local) and a Vault implementation (package vault) can satisfy it.
//
// Contract shared by every implementation (checked by package secretstest):
//   - A path is a '/'-separated sequence of segments of lower-case ASCII letters,
//     digits, '.', '_' and '-', each segment starting with a letter or digit, with no
//     ".." anywhere (see ValidPath). An invalid path is an error wrapping
//     ErrInvalidPath and never touches storage: it can never name anything outside
//     the backend's root.
//   - Each Put creates a new immutable version; versions start at 1 and increase by
//     one. Concurrent Puts to one path never return the same version.
//   - Keys and values of Data are arbitrary valid UTF-8 (including the empty string)
//     and round-trip exactly; keys must be non-empty. Invalid UTF-8 is rejected rather
//     than silently altered (Vault's JSON API could not store it faithfully).
//   - A missing path or version is reported as an error wrapping ErrNotFound.
//   - Destroy removes every version and the version history: the next Put at that path
//     returns version 1 again. Child paths ("a/b" under "a") are separate secrets and
//     are not affected.
//   - Returned values are copies: callers may modify them freely.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Implementations wrap them with context; test with errors.Is.
var (
	// ErrNotFound reports that no secret (or no such version) exists at a path.
	ErrNotFound = errors.New("secrets: not found")
	// ErrInvalidPath reports a path that fails ValidPath.
	ErrInvalidPath = errors.New("secrets: invalid path")
)

// Limits every implementation enforces, so that behaviour does not depend on the backend.
const (
	// MaxPathLen is the longest accepted path, in bytes.
	MaxPathLen = 512
	// MaxSegmentLen is the longest accepted path segment, in bytes (a common file
	// system limit is 255; the local backend adds a few bytes for its own names).
	MaxSegmentLen = 128
	// MaxDataSize is the largest accepted sum of key and value lengths of one version.
	MaxDataSize = 512 << 10
)

// Secret is one version of the secret stored at a path.
//
// Secret implements slog.LogValuer, fmt.Stringer and fmt.GoStringer so that logging or
// printing it never reveals Data.
type Secret struct {
	// Data is the secret's content.
	Data map[string]string
	// Version is this version's number (1, 2, …).
	Version int
	// CreatedAt is when this version was written, in UTC.
	CreatedAt time.Time
}

// LogValue implements slog.LogValuer: it logs the version, creation time and the number
// of entries, never the keys or values of Data.
func (s Secret) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("version", s.Version),
		slog.Time("created_at", s.CreatedAt),
		slog.String("data", fmt.Sprintf("[REDACTED %d entries]", len(s.Data))),
	)
}

// String implements fmt.Stringer with the same redaction as LogValue.
func (s Secret) String() string {
	return fmt.Sprintf("secrets.Secret{Version: %d, CreatedAt: %s, Data: [REDACTED %d entries]}",
		s.Version, s.CreatedAt.Format(time.RFC3339Nano), len(s.Data))
}

// GoString implements fmt.GoStringer so that %#v is redacted too.
func (s Secret) GoString() string { return s.String() }

// Backend stores versioned secrets. Implementations are safe for concurrent use.
// See the package documentation for the contract every implementation follows.
type Backend interface {
	// Put writes data as a new version at path (versions start at 1 and increase)
	// and returns that version. The data is copied.
	Put(ctx context.Context, path string, data map[string]string) (version int, err error)
	// Get returns the given version, or the latest when version is 0. It returns an
	// error wrapping ErrNotFound when the path or the version does not exist, and an
	// error (not ErrNotFound) for a negative version.
	Get(ctx context.Context, path string, version int) (*Secret, error)
	// Destroy permanently removes every version at path (an agent's
	// decommissioning). Destroying a path that holds nothing is not an error.
	Destroy(ctx context.Context, path string) error
	// Ping reports whether the backend is reachable (for /readyz).
	Ping(ctx context.Context) error
}

// ValidPath reports whether path is acceptable to every Backend, and if not, why
// (the error wraps ErrInvalidPath). The rule is
// ^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$ with no ".." anywhere, at most
// MaxPathLen bytes and segments of at most MaxSegmentLen bytes. Upper case is refused
// so that a path names the same thing on case-insensitive file systems.
func ValidPath(path string) error {
	if path == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPath)
	}
	if len(path) > MaxPathLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidPath, MaxPathLen)
	}
	if strings.Contains(path, "..") {
		return fmt.Errorf("%w: %q contains \"..\"", ErrInvalidPath, path)
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" {
			return fmt.Errorf("%w: %q has an empty segment", ErrInvalidPath, path)
		}
		if len(seg) > MaxSegmentLen {
			return fmt.Errorf("%w: segment longer than %d bytes", ErrInvalidPath, MaxSegmentLen)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			case i > 0 && (c == '.' || c == '_' || c == '-'):
			default:
				// %q of the whole path is safe to log: paths are identifiers, not secrets.
				return fmt.Errorf("%w: %q: segments are [a-z0-9][a-z0-9._-]*", ErrInvalidPath, path)
			}
		}
	}
	return nil
}

// ValidData reports whether data is acceptable to every Backend: keys are non-empty
// valid UTF-8, values are valid UTF-8, and the total size is at most MaxDataSize.
// Error messages never include values.
func ValidData(data map[string]string) error {
	size := 0
	for k, v := range data {
		if k == "" {
			return errors.New("secrets: data has an empty key")
		}
		if !utf8.ValidString(k) {
			return errors.New("secrets: data has a key that is not valid UTF-8")
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("secrets: value of key %q is not valid UTF-8", k)
		}
		size += len(k) + len(v)
	}
	if size > MaxDataSize {
		return fmt.Errorf("secrets: data is %d bytes, more than %d", size, MaxDataSize)
	}
	return nil
}
