package local

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/secrets/secretstest"
)

func testKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

func newBackend(t *testing.T, dir string, key []byte) *Backend {
	t.Helper()
	b, err := New(dir, key)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	secretstest.Run(t, func(t *testing.T) secrets.Backend {
		return newBackend(t, filepath.Join(t.TempDir(), "secrets"), testKey(t))
	})
}

// putOne writes one secret and returns the backend, its directory and the file of v1.
func putOne(t *testing.T, p string) (*Backend, string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	key := testKey(t)
	b := newBackend(t, dir, key)
	if _, err := b.Put(t.Context(), p, map[string]string{"private_key": "very secret"}); err != nil {
		t.Fatal(err)
	}
	return b, dir, key
}

func TestTamperedCiphertextFails(t *testing.T) {
	const p = "lanyard/signing-keys/k1"
	b, dir, _ := putOne(t, p)
	file := filepath.Join(dir, p, "_v1.enc")
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one bit in each region: magic, format, nonce, ciphertext, tag.
	positions := map[string]int{
		"magic":      0,
		"format":     len(magic),
		"nonce":      headerLen + 3,
		"ciphertext": headerLen + nonceLen + 5,
		"tag":        len(orig) - 1,
	}
	for region, pos := range positions {
		t.Run(region, func(t *testing.T) {
			bad := bytes.Clone(orig)
			bad[pos] ^= 0x01
			if err := os.WriteFile(file, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := b.Get(t.Context(), p, 1)
			if err == nil {
				t.Fatalf("Get of a file with a flipped bit in the %s succeeded: %v", region, s)
			}
			if errors.Is(err, secrets.ErrNotFound) {
				t.Fatalf("tampering reported as not found: %v", err)
			}
		})
	}
	for name, bad := range map[string][]byte{
		"empty":     {},
		"truncated": orig[:len(orig)-1],
		"header":    orig[:headerLen+nonceLen],
		"appended":  append(bytes.Clone(orig), 0),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(file, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Get(t.Context(), p, 1); err == nil {
				t.Fatal("Get succeeded")
			}
		})
	}
	if err := os.WriteFile(file, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(t.Context(), p, 1); err != nil {
		t.Fatalf("restored file: %v", err)
	}
}

func TestMovedFileFails(t *testing.T) {
	const p = "agents/agt-1"
	b, dir, _ := putOne(t, p)
	if _, err := b.Put(t.Context(), "agents/agt-2", map[string]string{"private_key": "other"}); err != nil {
		t.Fatal(err)
	}
	v1 := filepath.Join(dir, p, "_v1.enc")
	// Renamed to another version of the same path: v2 must not decrypt as v2.
	if err := os.Link(v1, filepath.Join(dir, p, "_v2.enc")); err != nil {
		t.Fatal(err)
	}
	if s, err := b.Get(t.Context(), p, 2); err == nil {
		t.Errorf("version 1 renamed to version 2 decrypted: %v", s)
	}
	if s, err := b.Get(t.Context(), p, 0); err == nil {
		t.Errorf("latest (the renamed file) decrypted: %v", s)
	}
	// Copied over another path's version 1.
	if err := os.Rename(v1, filepath.Join(dir, "agents/agt-2", "_v1.enc")); err != nil {
		t.Fatal(err)
	}
	if s, err := b.Get(t.Context(), "agents/agt-2", 1); err == nil {
		t.Errorf("agt-1's file decrypted as agt-2: %v", s)
	}
}

func TestWrongMasterKeyFails(t *testing.T) {
	const p = "a/b"
	_, dir, key := putOne(t, p)
	other := bytes.Clone(key)
	other[0] ^= 0x80
	b2 := newBackend(t, dir, other)
	if s, err := b2.Get(t.Context(), p, 1); err == nil {
		t.Fatalf("Get with the wrong master key succeeded: %v", s)
	} else if strings.Contains(err.Error(), "very secret") {
		t.Fatalf("error reveals the plaintext: %v", err)
	}
	b3 := newBackend(t, dir, key)
	if _, err := b3.Get(t.Context(), p, 1); err != nil {
		t.Fatalf("Get with the right key after reopening: %v", err)
	}
}

func TestFileModes(t *testing.T) {
	const p = "lanyard/signing-keys/abc"
	b, dir, _ := putOne(t, p)
	if _, err := b.Put(t.Context(), p, map[string]string{"k": "v2"}); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %#o, want %#o", name, got, want)
		}
		if !d.IsDir() && !strings.HasPrefix(d.Name(), "_v") {
			t.Errorf("unexpected file left behind: %s", name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFileDoesNotContainPlaintext(t *testing.T) {
	const p = "x"
	_, dir, _ := putOne(t, p)
	raw, err := os.ReadFile(filepath.Join(dir, p, "_v1.enc"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("very secret")) || bytes.Contains(raw, []byte("private_key")) {
		t.Fatal("the file holds plaintext")
	}
}

// TestInvalidPathsStayInside checks that no invalid path creates anything, inside or
// outside the root.
func TestInvalidPathsStayInside(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "secrets")
	b := newBackend(t, dir, testKey(t))
	for _, tc := range secretstest.InvalidPaths {
		b.Put(t.Context(), tc.Path, map[string]string{"k": "v"})
		b.Destroy(t.Context(), tc.Path)
	}
	for _, d := range []string{parent, dir} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if d == parent && (len(entries) != 1 || entries[0].Name() != "secrets") {
			t.Errorf("%s holds %v, want only secrets/", d, entries)
		}
		if d == dir && len(entries) != 0 {
			t.Errorf("%s holds %v, want nothing", d, entries)
		}
	}
}

// TestSymlinkEscapeRefused plants a symbolic link under the root that points outside
// it: the backend must neither write nor read through it.
func TestSymlinkEscapeRefused(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "secrets")
	outside := filepath.Join(parent, "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, dir, testKey(t))
	if err := os.Symlink(outside, filepath.Join(dir, "evil")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(t.Context(), "evil/x", map[string]string{"k": "v"}); err == nil {
		t.Error("Put through a symlink leading outside the root succeeded")
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Errorf("files created outside the root: %v", entries)
	}
}

func TestConcurrentBackendsOneDirectory(t *testing.T) {
	// Two Backends on one directory stand for two processes: their mutexes are
	// distinct, so only link(2)'s exclusivity keeps versions distinct.
	dir := filepath.Join(t.TempDir(), "secrets")
	key := testKey(t)
	bs := []*Backend{newBackend(t, dir, key), newBackend(t, dir, key)}
	const p = "shared/path"
	var (
		mu   sync.Mutex
		seen = map[int]bool{}
		wg   sync.WaitGroup
	)
	for i := range 8 {
		b := bs[i%2]
		wg.Go(func() {
			for range 8 {
				v, err := b.Put(t.Context(), p, map[string]string{"k": "v"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[v] {
					t.Errorf("version %d returned twice", v)
				}
				seen[v] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for v := 1; v <= 64; v++ {
		if !seen[v] {
			t.Errorf("version %d missing", v)
		}
		if _, err := bs[0].Get(t.Context(), p, v); err != nil {
			t.Errorf("Get(%d): %v", v, err)
		}
	}
}

func TestNewRefusesBadArguments(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := New(dir, make([]byte, n)); err == nil {
			t.Errorf("New with a %d-byte key succeeded", n)
		}
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := New(open, testKey(t)); err == nil {
		t.Error("New on a world-writable directory succeeded")
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(file, testKey(t)); err == nil {
		t.Error("New on a file succeeded")
	}
}

func TestPingDetectsReplacedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	b := newBackend(t, dir, testKey(t))
	if err := b.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(t.Context()); err == nil {
		t.Error("Ping succeeded with the directory gone")
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(t.Context()); err == nil {
		t.Error("Ping succeeded with the directory replaced")
	}
}

func TestBackendDoesNotPrintKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xAB}, KeySize)
	b := newBackend(t, t.TempDir(), key)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("backend", "b", b)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", b, b, b, b)
	for _, leak := range []string{"abab", "ABAB", base64.StdEncoding.EncodeToString(key)[:8]} {
		if strings.Contains(out, leak) {
			t.Fatalf("printing the backend leaks key material: %s", out)
		}
	}
}

func TestLoadMasterKeyFromEnv(t *testing.T) {
	key := testKey(t)
	dir := t.TempDir()
	for name, v := range map[string]string{
		"std":            base64.StdEncoding.EncodeToString(key),
		"raw url":        base64.RawURLEncoding.EncodeToString(key),
		"trailing space": base64.StdEncoding.EncodeToString(key) + "\n",
	} {
		got, err := LoadMasterKey(dir, v)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, key) {
			t.Errorf("%s: wrong key", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, MasterKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a key file was created although the environment held the key")
	}
	for name, v := range map[string]string{
		"not base64":     "not base64 at all!",
		"16 bytes":       base64.StdEncoding.EncodeToString(key[:16]),
		"33 bytes":       base64.StdEncoding.EncodeToString(append(bytes.Clone(key), 1)),
		"hex":            fmt.Sprintf("%x", key),
		"std unpadded":   base64.RawStdEncoding.EncodeToString(key[:31]),
		"url with + / ?": "++++" + base64.RawURLEncoding.EncodeToString(key)[4:],
	} {
		_, err := LoadMasterKey(dir, v)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), MasterKeyEnv) {
			t.Errorf("%s: error does not name %s: %v", name, MasterKeyEnv, err)
		}
		if len(v) > 8 && strings.Contains(err.Error(), v[:8]) {
			t.Errorf("%s: error echoes the value: %v", name, err)
		}
	}
}

func TestLoadMasterKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := LoadMasterKey(dir, "")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if len(k1) != KeySize {
		t.Fatalf("created key is %d bytes", len(k1))
	}
	file := filepath.Join(dir, MasterKeyFile)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("created key file mode %#o, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadMasterKey(dir, "")
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("reloading returned a different key")
	}
	// The file's text is usable as LANYARD_MASTER_KEY.
	text, _ := os.ReadFile(file)
	if k3, err := LoadMasterKey(t.TempDir(), string(text)); err != nil || !bytes.Equal(k3, k1) {
		t.Errorf("file contents as the environment value: %v", err)
	}
	// Raw 32 bytes are accepted too.
	raw := filepath.Join(t.TempDir(), "raw")
	os.Mkdir(raw, 0o700)
	os.WriteFile(filepath.Join(raw, MasterKeyFile), k1, 0o600)
	if k4, err := LoadMasterKey(raw, ""); err != nil || !bytes.Equal(k4, k1) {
		t.Errorf("raw key file: %v", err)
	}
}

func TestLoadMasterKeyFilePermissions(t *testing.T) {
	if os.Getuid() == 0 {
		t.Log("running as root: permission checks still apply to the mode bits")
	}
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o660, 0o666, 0o610} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, MasterKeyFile)
			os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(testKey(t))), 0o600)
			if err := os.Chmod(file, mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadMasterKey(dir, "")
			if err == nil {
				t.Fatalf("key file with mode %#o accepted", mode)
			}
			if !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("error does not say how to fix it: %v", err)
			}
		})
	}
	for _, mode := range []fs.FileMode{0o600, 0o400} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, MasterKeyFile)
			os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(testKey(t))), 0o600)
			os.Chmod(file, mode)
			if _, err := LoadMasterKey(dir, ""); err != nil {
				t.Fatalf("key file with mode %#o refused: %v", mode, err)
			}
		})
	}
}

func TestLoadMasterKeyFileMalformed(t *testing.T) {
	for name, contents := range map[string]string{
		"empty":    "",
		"short":    base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"garbage":  "this is not a key, it is a sentence of some length",
		"31 bytes": string(make([]byte, 31)),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, MasterKeyFile), []byte(contents), 0o600)
			if _, err := LoadMasterKey(dir, ""); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, MasterKeyFile), 0o700)
		if _, err := LoadMasterKey(dir, ""); err == nil {
			t.Fatal("accepted a directory")
		}
	})
}

func TestLoadMasterKeyConcurrentCreation(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := LoadMasterKey(dir, "")
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if !bytes.Equal(keys[0], keys[i]) {
			t.Fatal("concurrent first starts ended up with different keys")
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only %s", len(entries), MasterKeyFile)
	}
}
