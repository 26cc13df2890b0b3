// Package local implements secrets.Backend on the local file system, each version
// encrypted with AES-256-GCM under a master key. It is the default backend for a
// single Lanyard instance; replicas that share secrets use package vault.
//
// # Layout
//
// A secret at path p (for example "lanyard/signing-keys/ab12…") is the directory
// <dir>/p; its version N is the file <dir>/p/_vN.enc. Path segments cannot start with
// '_' (see secrets.ValidPath), so a version file can never collide with a child path
// ("a/b" is the directory <dir>/a/b next to <dir>/a/_v1.enc). Every file system
// operation goes through an os.Root opened on dir, so neither a path nor a symbolic
// link planted under dir can reach a file outside it. Files are created 0600 and
// directories 0700.
//
// # File format
//
//	"LNYS" | 0x01 | nonce (12 bytes) | AES-256-GCM(plaintext) with its 16-byte tag
//
// The plaintext is JSON {"created_at": RFC 3339, "data": {…}}. The additional
// authenticated data is "lanyard secrets local v1" NUL path NUL version, so a file
// moved to another path or renamed to another version fails to decrypt instead of
// being served as the wrong secret. A fresh random 96-bit nonce is drawn for every
// write; with one master key that is safe for far more writes (2^32) than Lanyard
// makes.
//
// # Durability and concurrency
//
// A version is written to a temporary file, fsynced, then published with link(2),
// which fails if the version already exists (the O_EXCL guarantee, but atomic: a
// reader sees the whole file or none), and the directory is fsynced. Writers in one
// process are serialised by a mutex; writers in different processes sharing dir
// still never publish the same version, because the loser of link(2) retries with
// the next number.
//
// Destroy unlinks the files. On journaling file systems and SSDs that does not
// guarantee the bytes are gone from the medium; they remain encrypted under the
// master key, which is what protects them.
package local

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lanyardhq/lanyard/internal/secrets"
)

// KeySize is the size of the master key in bytes (AES-256).
const KeySize = 32

const (
	magic       = "LNYS"
	formatV1    = 0x01
	headerLen   = len(magic) + 1
	nonceLen    = 12
	aadPrefix   = "lanyard secrets local v1"
	versionPref = "_v"
	versionSuf  = ".enc"
	tmpPrefix   = "_tmp-"
	// maxFileSize bounds what Get reads: JSON may escape a byte of data as six.
	maxFileSize = 6*secrets.MaxDataSize + 4096
	// maxPublishTries bounds the retries when another process takes a version.
	maxPublishTries = 64
)

var _ secrets.Backend = (*Backend)(nil)

// Backend is the local encrypted secrets.Backend. Create it with New. It is safe for
// concurrent use. Printing or logging a Backend shows only its directory.
type Backend struct {
	dir  string
	root *os.Root
	aead cipher.AEAD
	// mu serialises Put and Destroy within the process, so that Destroy's removal of
	// empty directories cannot race a Put creating them.
	mu sync.Mutex
}

// New returns a Backend storing secrets under dir, encrypted with masterKey, which
// must be KeySize bytes (see LoadMasterKey). dir is created (0700) if absent; an
// existing dir that is writable by group or others is refused. The key is not
// retained beyond the cipher built from it.
func New(dir string, masterKey []byte) (*Backend, error) {
	if len(masterKey) != KeySize {
		return nil, fmt.Errorf("secrets: local: master key is %d bytes, want %d", len(masterKey), KeySize)
	}
	if dir == "" {
		return nil, errors.New("secrets: local: empty directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: local: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("secrets: local: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("secrets: local: %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("secrets: local: directory %s has mode %#o, writable by group or others; run chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("secrets: local: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: local: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("secrets: local: %w", err)
	}
	return &Backend{dir: dir, root: root, aead: aead}, nil
}

// Close releases the directory handle. The Backend must not be used afterwards.
func (b *Backend) Close() error { return b.root.Close() }

// LogValue implements slog.LogValuer; it never includes key material.
func (b *Backend) LogValue() slog.Value {
	return slog.GroupValue(slog.String("type", "local"), slog.String("dir", b.dir))
}

// String implements fmt.Stringer; it never includes key material.
func (b *Backend) String() string { return "secrets/local(" + b.dir + ")" }

// GoString implements fmt.GoStringer so that %#v does not dump the cipher.
func (b *Backend) GoString() string { return b.String() }

type plaintext struct {
	CreatedAt time.Time         `json:"created_at"`
	Data      map[string]string `json:"data"`
}

// Put implements secrets.Backend.
func (b *Backend) Put(ctx context.Context, p string, data map[string]string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("secrets: local: put: %w", err)
	}
	if err := secrets.ValidPath(p); err != nil {
		return 0, err
	}
	if err := secrets.ValidData(data); err != nil {
		return 0, err
	}
	if data == nil {
		data = map[string]string{}
	}
	pt, err := json.Marshal(plaintext{CreatedAt: time.Now().UTC(), Data: data})
	if err != nil {
		return 0, fmt.Errorf("secrets: local: put %s: %w", p, err)
	}
	defer clear(pt)

	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.mkdirs(p); err != nil {
		return 0, fmt.Errorf("secrets: local: put %s: %w", p, err)
	}
	versions, err := b.versions(p)
	if err != nil {
		return 0, fmt.Errorf("secrets: local: put %s: %w", p, err)
	}
	v := 1
	if len(versions) > 0 {
		v = versions[len(versions)-1] + 1
	}
	for range maxPublishTries {
		err := b.publish(p, v, b.seal(p, v, pt))
		if errors.Is(err, fs.ErrExist) {
			v++ // another process took v: encrypt again, bound to the next version
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("secrets: local: put %s: %w", p, err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("secrets: local: put %s: gave up after %d concurrent writers took the next version", p, maxPublishTries)
}

// Get implements secrets.Backend.
func (b *Backend) Get(ctx context.Context, p string, version int) (*secrets.Secret, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("secrets: local: get: %w", err)
	}
	if err := secrets.ValidPath(p); err != nil {
		return nil, err
	}
	if version < 0 {
		return nil, fmt.Errorf("secrets: local: get %s: negative version %d", p, version)
	}
	if version == 0 {
		versions, err := b.versions(p)
		if err != nil {
			return nil, fmt.Errorf("secrets: local: get %s: %w", p, err)
		}
		if len(versions) == 0 {
			return nil, fmt.Errorf("%w: %s", secrets.ErrNotFound, p)
		}
		version = versions[len(versions)-1]
	}
	raw, err := b.readFile(versionFile(p, version))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s version %d", secrets.ErrNotFound, p, version)
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: local: get %s version %d: %w", p, version, err)
	}
	pt, err := b.open(p, version, raw)
	if err != nil {
		return nil, fmt.Errorf("secrets: local: get %s version %d: %w", p, version, err)
	}
	defer clear(pt)
	var dec plaintext
	if err := json.Unmarshal(pt, &dec); err != nil {
		// Authenticated but unparseable: only a bug could write this. Do not echo it.
		return nil, fmt.Errorf("secrets: local: get %s version %d: malformed plaintext", p, version)
	}
	if dec.Data == nil {
		dec.Data = map[string]string{}
	}
	return &secrets.Secret{Data: dec.Data, Version: version, CreatedAt: dec.CreatedAt.UTC()}, nil
}

// Destroy implements secrets.Backend. It removes the path's version files (and any
// temporary file a crashed writer left), then the directories left empty, up to dir.
func (b *Backend) Destroy(ctx context.Context, p string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("secrets: local: destroy: %w", err)
	}
	if err := secrets.ValidPath(p); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	names, err := b.readDirNames(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secrets: local: destroy %s: %w", p, err)
	}
	removed := false
	for _, name := range names {
		if _, ok := parseVersion(name); ok || strings.HasPrefix(name, tmpPrefix) {
			if err := b.root.Remove(path.Join(p, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("secrets: local: destroy %s: %w", p, err)
			}
			removed = true
		}
	}
	if removed {
		if err := b.syncDir(p); err != nil {
			return fmt.Errorf("secrets: local: destroy %s: %w", p, err)
		}
	}
	// Remove directories left empty, deepest first; stop at the first one that is not
	// (it holds a child secret). Failing to tidy up is not a failure to destroy.
	for d := p; d != "."; d = path.Dir(d) {
		if err := b.root.Remove(d); err != nil {
			break
		}
		_ = b.syncDir(path.Dir(d))
	}
	return nil
}

// Ping implements secrets.Backend: it checks that dir still exists and is the
// directory the Backend opened.
func (b *Backend) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("secrets: local: ping: %w", err)
	}
	opened, err := b.root.Stat(".")
	if err != nil {
		return fmt.Errorf("secrets: local: ping: %w", err)
	}
	named, err := os.Stat(b.dir)
	if err != nil {
		return fmt.Errorf("secrets: local: ping: %w", err)
	}
	if !os.SameFile(opened, named) {
		return fmt.Errorf("secrets: local: ping: %s was replaced since start-up", b.dir)
	}
	return nil
}

func aad(p string, version int) []byte {
	a := make([]byte, 0, len(aadPrefix)+len(p)+24)
	a = append(a, aadPrefix...)
	a = append(a, 0)
	a = append(a, p...)
	a = append(a, 0)
	return strconv.AppendInt(a, int64(version), 10)
}

// seal returns the file contents for version v of p.
func (b *Backend) seal(p string, v int, pt []byte) []byte {
	out := make([]byte, headerLen+nonceLen, headerLen+nonceLen+len(pt)+b.aead.Overhead())
	copy(out, magic)
	out[len(magic)] = formatV1
	rand.Read(out[headerLen:]) // never fails (crypto/rand panics rather than return short)
	return b.aead.Seal(out, out[headerLen:headerLen+nonceLen], pt, aad(p, v))
}

// open authenticates and decrypts the file contents of version v of p.
func (b *Backend) open(p string, v int, raw []byte) ([]byte, error) {
	if len(raw) < headerLen+nonceLen+b.aead.Overhead() || string(raw[:len(magic)]) != magic {
		return nil, errors.New("not a Lanyard secret file")
	}
	if raw[len(magic)] != formatV1 {
		return nil, fmt.Errorf("unknown file format %d", raw[len(magic)])
	}
	nonce := raw[headerLen : headerLen+nonceLen]
	pt, err := b.aead.Open(nil, nonce, raw[headerLen+nonceLen:], aad(p, v))
	if err != nil {
		return nil, errors.New("decryption failed: the file was modified, moved from another path or version, or the master key is wrong")
	}
	return pt, nil
}

// publish writes contents as version v of p, failing with fs.ErrExist if v exists.
func (b *Backend) publish(p string, v int, contents []byte) (err error) {
	tmp := path.Join(p, tmpPrefix+randomHex())
	f, err := b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		// The temporary name is only ever a second link (or garbage on failure).
		if rerr := b.root.Remove(tmp); rerr != nil && err == nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
		}
	}()
	if _, err := f.Write(contents); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := b.root.Link(tmp, versionFile(p, v)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fs.ErrExist
		}
		return err
	}
	return b.syncDir(p)
}

// mkdirs creates the directories of p (0700), fsyncing each parent that gained an
// entry so the new path survives a crash. Existing components must be directories.
func (b *Backend) mkdirs(p string) error {
	d := ""
	for seg := range strings.SplitSeq(p, "/") {
		parent := d
		if d == "" {
			d = seg
			parent = "."
		} else {
			d = d + "/" + seg
		}
		err := b.root.Mkdir(d, 0o700)
		if errors.Is(err, fs.ErrExist) {
			fi, serr := b.root.Stat(d)
			if serr != nil {
				return serr
			}
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := b.syncDir(parent); err != nil {
			return err
		}
	}
	return nil
}

// versions returns the versions present at p in increasing order (none if p is absent).
func (b *Backend) versions(p string) ([]int, error) {
	names, err := b.readDirNames(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var vs []int
	for _, name := range names {
		if v, ok := parseVersion(name); ok {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs, nil
}

func (b *Backend) readDirNames(p string) ([]string, error) {
	f, err := b.root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", p)
	}
	return f.Readdirnames(-1)
}

func (b *Backend) readFile(name string) ([]byte, error) {
	f, err := b.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxFileSize)
	}
	return raw, nil
}

func (b *Backend) syncDir(d string) error {
	f, err := b.root.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err // EINVAL: the file system cannot fsync directories; nothing to do
	}
	return nil
}

func versionFile(p string, v int) string {
	return p + "/" + versionPref + strconv.Itoa(v) + versionSuf
}

// parseVersion parses "_v<N>.enc" with N a positive decimal without leading zeros.
func parseVersion(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, versionPref)
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, versionSuf)
	if !ok || s == "" || s[0] == '0' || len(s) > 9 {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		return 0, false
	}
	return v, true
}

func randomHex() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
