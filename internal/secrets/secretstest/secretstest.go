// Package secretstest is the conformance suite every secrets.Backend implementation
// must pass: the local backend runs it against a temporary directory, the Vault backend
// against a Vault dev server.
//
// Each subtest calls newBackend and works under its own random path prefix, and
// destroys what it wrote, so the suite can run against a shared server.
package secretstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/secrets"
)

// Run runs the conformance suite against the backends newBackend returns. newBackend
// may call t.Fatal or t.Skip, and should register its own cleanup.
func Run(t *testing.T, newBackend func(t *testing.T) secrets.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b secrets.Backend, prefix string)
	}{
		{"PutGetLatestGetVersion", testPutGet},
		{"VersionsIncrease", testVersionsIncrease},
		{"NotFound", testNotFound},
		{"NegativeVersion", testNegativeVersion},
		{"DestroyRemovesAllVersions", testDestroy},
		{"DestroyKeepsChildAndSibling", testDestroyScope},
		{"InvalidPathsRejected", testInvalidPaths},
		{"InvalidDataRejected", testInvalidData},
		{"ConcurrentPutsGetDistinctVersions", testConcurrentPuts},
		{"DataRoundTripsExactly", testRoundTrip},
		{"ReturnedDataIsACopy", testCopies},
		{"CanceledContext", testCanceled},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			prefix := "secretstest/" + randomID()
			tc.fn(t, b, prefix)
		})
	}
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// cleanup destroys p at the end of the test, with a context of its own because the
// test's may be done.
func cleanup(t *testing.T, b secrets.Backend, p string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Destroy(ctx, p); err != nil {
			t.Errorf("cleanup: Destroy(%q): %v", p, err)
		}
	})
}

func put(t *testing.T, b secrets.Backend, p string, data map[string]string) int {
	t.Helper()
	v, err := b.Put(t.Context(), p, data)
	if err != nil {
		t.Fatalf("Put(%q): %v", p, err)
	}
	return v
}

func get(t *testing.T, b secrets.Backend, p string, version int) *secrets.Secret {
	t.Helper()
	s, err := b.Get(t.Context(), p, version)
	if err != nil {
		t.Fatalf("Get(%q, %d): %v", p, version, err)
	}
	if s == nil {
		t.Fatalf("Get(%q, %d) = nil, nil", p, version)
	}
	return s
}

func wantNotFound(t *testing.T, b secrets.Backend, p string, version int) {
	t.Helper()
	s, err := b.Get(t.Context(), p, version)
	if !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Get(%q, %d) = %v, %v; want ErrNotFound", p, version, s, err)
	}
}

func testPutGet(t *testing.T, b secrets.Backend, prefix string) {
	p := prefix + "/agent-1"
	cleanup(t, b, p)
	before := time.Now().Add(-time.Minute) // clock skew allowance for remote backends
	data := map[string]string{"client_secret": "s3cr3t", "note": "first"}
	if v := put(t, b, p, data); v != 1 {
		t.Fatalf("first Put returned version %d, want 1", v)
	}
	for _, version := range []int{0, 1} {
		s := get(t, b, p, version)
		if s.Version != 1 {
			t.Errorf("Get(%d).Version = %d, want 1", version, s.Version)
		}
		if !maps.Equal(s.Data, data) {
			t.Errorf("Get(%d).Data differs from what was put", version)
		}
		if s.CreatedAt.Before(before) || s.CreatedAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("Get(%d).CreatedAt = %v, not around now", version, s.CreatedAt)
		}
		if s.CreatedAt.Location() != time.UTC {
			t.Errorf("Get(%d).CreatedAt is in %v, want UTC", version, s.CreatedAt.Location())
		}
	}
}

func testVersionsIncrease(t *testing.T, b secrets.Backend, prefix string) {
	p := prefix + "/rotating"
	cleanup(t, b, p)
	const n = 5
	for i := 1; i <= n; i++ {
		if v := put(t, b, p, map[string]string{"i": fmt.Sprint(i)}); v != i {
			t.Fatalf("Put #%d returned version %d, want %d", i, v, i)
		}
	}
	for i := 1; i <= n; i++ {
		s := get(t, b, p, i)
		if s.Version != i || s.Data["i"] != fmt.Sprint(i) {
			t.Errorf("Get(%d) = version %d, i=%q", i, s.Version, s.Data["i"])
		}
	}
	if s := get(t, b, p, 0); s.Version != n || s.Data["i"] != fmt.Sprint(n) {
		t.Errorf("Get(latest) = version %d, i=%q; want %d", s.Version, s.Data["i"], n)
	}
	wantNotFound(t, b, p, n+1)
}

func testNotFound(t *testing.T, b secrets.Backend, prefix string) {
	wantNotFound(t, b, prefix+"/absent", 0)
	wantNotFound(t, b, prefix+"/absent", 1)
	// A parent of an existing secret is not itself a secret.
	p := prefix + "/parent/child"
	cleanup(t, b, p)
	put(t, b, p, map[string]string{"k": "v"})
	wantNotFound(t, b, prefix+"/parent", 0)
	wantNotFound(t, b, prefix+"/parent", 1)
}

func testNegativeVersion(t *testing.T, b secrets.Backend, prefix string) {
	p := prefix + "/neg"
	cleanup(t, b, p)
	put(t, b, p, map[string]string{"k": "v"})
	s, err := b.Get(t.Context(), p, -1)
	if err == nil || errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Get(-1) = %v, %v; want an error other than ErrNotFound", s, err)
	}
}

func testDestroy(t *testing.T, b secrets.Backend, prefix string) {
	p := prefix + "/decommissioned"
	cleanup(t, b, p)
	for range 3 {
		put(t, b, p, map[string]string{"k": "v"})
	}
	if err := b.Destroy(t.Context(), p); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	for _, v := range []int{0, 1, 2, 3} {
		wantNotFound(t, b, p, v)
	}
	if err := b.Destroy(t.Context(), p); err != nil {
		t.Errorf("second Destroy: %v; want nil (idempotent)", err)
	}
	if err := b.Destroy(t.Context(), prefix+"/never-written"); err != nil {
		t.Errorf("Destroy of an absent path: %v; want nil", err)
	}
	// The history went with the versions: numbering starts again.
	if v := put(t, b, p, map[string]string{"k": "new"}); v != 1 {
		t.Errorf("Put after Destroy returned version %d, want 1", v)
	}
	if s := get(t, b, p, 0); s.Data["k"] != "new" {
		t.Errorf("Get after Destroy+Put returned old data")
	}
}

func testDestroyScope(t *testing.T, b secrets.Backend, prefix string) {
	parent, child, sibling := prefix+"/a", prefix+"/a/b", prefix+"/ab"
	for _, p := range []string{parent, child, sibling} {
		cleanup(t, b, p)
		put(t, b, p, map[string]string{"path": p})
	}
	if err := b.Destroy(t.Context(), parent); err != nil {
		t.Fatalf("Destroy(%q): %v", parent, err)
	}
	wantNotFound(t, b, parent, 0)
	for _, p := range []string{child, sibling} {
		if s := get(t, b, p, 0); s.Data["path"] != p {
			t.Errorf("Get(%q) after destroying %q: wrong data", p, parent)
		}
	}
	// Destroying the child leaves nothing; the parent can be written again.
	if err := b.Destroy(t.Context(), child); err != nil {
		t.Fatalf("Destroy(%q): %v", child, err)
	}
	wantNotFound(t, b, child, 0)
	if v := put(t, b, parent, map[string]string{"k": "v"}); v != 1 {
		t.Errorf("Put(%q) after Destroy = version %d, want 1", parent, v)
	}
}

// InvalidPaths is the table of paths every backend must refuse with ErrInvalidPath.
// It is exported so implementations can reuse it in their own tests (for example to
// check that nothing was created outside their root).
var InvalidPaths = []struct{ Name, Path string }{
	{"empty", ""},
	{"slash", "/"},
	{"absolute", "/etc/passwd"},
	{"trailing slash", "a/"},
	{"empty segment", "a//b"},
	{"dot-dot", ".."},
	{"dot-dot segment", "a/../b"},
	{"dot-dot prefix", "../outside"},
	{"dot-dot inside segment", "a..b"},
	{"dot", "."},
	{"dot segment", "a/./b"},
	{"leading dot", ".hidden"},
	{"leading dash", "-rf"},
	{"leading underscore", "_v1.enc"},
	{"leading underscore segment", "a/_v1.enc"},
	{"upper case", "Agent"},
	{"space", "a b"},
	{"backslash", `a\b`},
	{"backslash dot-dot", `..\x`},
	{"NUL", "a\x00b"},
	{"newline", "a\nb"},
	{"percent", "a%2fb"},
	{"colon", "c:/x"},
	{"tilde", "~root"},
	{"non-ASCII", "agént"},
	{"fullwidth slash", "a／b"},
	{"long segment", strings.Repeat("a", secrets.MaxSegmentLen+1)},
	{"long path", strings.Repeat("abcdefg/", secrets.MaxPathLen/8) + "x"},
}

func testInvalidPaths(t *testing.T, b secrets.Backend, _ string) {
	for _, tc := range InvalidPaths {
		t.Run(tc.Name, func(t *testing.T) {
			if _, err := b.Put(t.Context(), tc.Path, map[string]string{"k": "v"}); !errors.Is(err, secrets.ErrInvalidPath) {
				t.Errorf("Put(%q) = %v, want ErrInvalidPath", tc.Path, err)
			}
			if _, err := b.Get(t.Context(), tc.Path, 0); !errors.Is(err, secrets.ErrInvalidPath) {
				t.Errorf("Get(%q) = %v, want ErrInvalidPath", tc.Path, err)
			}
			if err := b.Destroy(t.Context(), tc.Path); !errors.Is(err, secrets.ErrInvalidPath) {
				t.Errorf("Destroy(%q) = %v, want ErrInvalidPath", tc.Path, err)
			}
		})
	}
}

func testInvalidData(t *testing.T, b secrets.Backend, prefix string) {
	p := prefix + "/bad-data"
	cleanup(t, b, p)
	for name, data := range map[string]map[string]string{
		"empty key":           {"": "v"},
		"invalid UTF-8 key":   {"\xff": "v"},
		"invalid UTF-8 value": {"k": "a\xc3"},
		"too large":           {"k": strings.Repeat("x", secrets.MaxDataSize)},
	} {
		if v, err := b.Put(t.Context(), p, data); err == nil {
			t.Errorf("Put(%s) = version %d, want an error", name, v)
		}
	}
	wantNotFound(t, b, p, 0)
}

func testConcurrentPuts(t *testing.T, b secrets.Backend, prefix string) {
	p := prefix + "/contended"
	cleanup(t, b, p)
	const writers, each = 8, 4
	var (
		mu       sync.Mutex
		wrote    = map[int]string{} // version → writer's payload
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				payload := fmt.Sprintf("writer %d put %d", w, i)
				v, err := b.Put(t.Context(), p, map[string]string{"payload": payload})
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				mu.Lock()
				if prev, dup := wrote[v]; dup {
					t.Errorf("version %d returned twice (%q and %q)", v, prev, payload)
				}
				wrote[v] = payload
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("concurrent Put: %v", firstErr)
	}
	versions := slices.Sorted(maps.Keys(wrote))
	for i, v := range versions {
		if v != i+1 {
			t.Fatalf("versions = %v, want 1..%d without gaps", versions, writers*each)
		}
	}
	for v, payload := range wrote {
		if s := get(t, b, p, v); s.Data["payload"] != payload {
			t.Errorf("version %d holds %q, want %q", v, s.Data["payload"], payload)
		}
	}
}

func testRoundTrip(t *testing.T, b secrets.Backend, prefix string) {
	cases := []struct {
		name string
		data map[string]string
	}{
		{"empty map", map[string]string{}},
		{"empty value", map[string]string{"k": ""}},
		{"unicode", map[string]string{"clé 🔑": "héllo 世界 \u200b\U0001F600", "ключ": "значение"}},
		{"json and escapes", map[string]string{"k": "{\"a\":[1,2]}\\n\t\r\n\"'<>&\u2028\u2029"}},
		{"control and NUL", map[string]string{"k": "\x00\x01\x1f\x7f"}},
		{"PEM", map[string]string{"private_key": "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"}},
		{"many keys", func() map[string]string {
			m := map[string]string{}
			for i := range 100 {
				m[fmt.Sprintf("key-%03d", i)] = strings.Repeat("v", i)
			}
			return m
		}()},
		{"large value", map[string]string{"blob": strings.Repeat("0123456789abcdef", 4096)}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := fmt.Sprintf("%s/rt-%d", prefix, i)
			cleanup(t, b, p)
			v := put(t, b, p, tc.data)
			s := get(t, b, p, v)
			if s.Data == nil {
				t.Fatalf("Data is nil; want an empty map")
			}
			if !maps.Equal(s.Data, tc.data) {
				t.Errorf("data did not round-trip: got %d entries, want %d", len(s.Data), len(tc.data))
				for k, want := range tc.data {
					if got, ok := s.Data[k]; !ok || got != want {
						t.Errorf("key %q: got %q (present %v), want %q", k, got, ok, want)
					}
				}
			}
		})
	}
	t.Run("nil map", func(t *testing.T) {
		p := prefix + "/rt-nil"
		cleanup(t, b, p)
		v := put(t, b, p, nil)
		if s := get(t, b, p, v); s.Data == nil || len(s.Data) != 0 {
			t.Errorf("Put(nil) then Get: Data = %v, want an empty map", s.Data)
		}
	})
}

func testCopies(t *testing.T, b secrets.Backend, prefix string) {
	p := prefix + "/copies"
	cleanup(t, b, p)
	in := map[string]string{"k": "original"}
	put(t, b, p, in)
	in["k"] = "changed after Put"
	s := get(t, b, p, 0)
	if s.Data["k"] != "original" {
		t.Fatalf("changing the map after Put changed the stored secret")
	}
	s.Data["k"] = "changed after Get"
	if s := get(t, b, p, 0); s.Data["k"] != "original" {
		t.Fatalf("changing the map returned by Get changed the stored secret")
	}
}

func testCanceled(t *testing.T, b secrets.Backend, prefix string) {
	p := prefix + "/canceled"
	cleanup(t, b, p)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if v, err := b.Put(ctx, p, map[string]string{"k": "v"}); err == nil {
		t.Errorf("Put with a canceled context = version %d, nil; want an error", v)
	}
	if _, err := b.Get(ctx, p, 0); err == nil {
		t.Errorf("Get with a canceled context succeeded")
	}
	wantNotFound(t, b, p, 0)
}

func testPing(t *testing.T, b secrets.Backend, _ string) {
	if err := b.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
