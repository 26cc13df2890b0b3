package local

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// MasterKeyFile is the name of the master key file in the data directory.
const MasterKeyFile = "master.key"

// MasterKeyEnv is the environment variable LoadMasterKey's envValue comes from.
const MasterKeyEnv = "LANYARD_MASTER_KEY"

// LoadMasterKey returns the 32-byte master key of the local backend.
//
// If envValue (the value of LANYARD_MASTER_KEY) is non-empty, it must be the standard
// (padded) or URL-safe unpadded base64 encoding of exactly 32 bytes; the key file is
// then neither read nor created. Otherwise the key is read from dataDir/master.key,
// which must be a regular file with mode 0600 or stricter (a key readable by group or
// others is refused, not silently used), holding either 32 raw bytes or their base64.
// If the file does not exist it is created: 32 bytes from crypto/rand, written as
// standard base64 and a newline (so it can be moved into LANYARD_MASTER_KEY or a
// Kubernetes Secret verbatim), mode 0600, atomically; if two processes race to create
// it, both end up with the winner's key.
//
// Losing this key loses every secret of the local backend: back it up with the data
// directory, but not next to it. Error messages never include key material.
func LoadMasterKey(dataDir, envValue string) ([]byte, error) {
	if envValue != "" {
		key, err := decodeKey(envValue)
		if err != nil {
			return nil, fmt.Errorf("secrets: %s %w", MasterKeyEnv, err)
		}
		return key, nil
	}
	if dataDir == "" {
		return nil, errors.New("secrets: no data directory for the master key file")
	}
	name := filepath.Join(dataDir, MasterKeyFile)
	key, err := readKeyFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return createKeyFile(dataDir, name)
	}
	return key, err
}

// decodeKey parses a key in either accepted base64 form; its errors complete the
// sentence "<source> …".
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	key, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		key, err = base64.RawURLEncoding.Strict().DecodeString(s)
	}
	if err != nil {
		return nil, fmt.Errorf("must be base64 (standard, or URL-safe without padding) of %d bytes; it is not valid base64", KeySize)
	}
	if len(key) != KeySize {
		clear(key)
		return nil, fmt.Errorf("must be base64 of exactly %d bytes; it decodes to %d bytes", KeySize, len(key))
	}
	return key, nil
}

func readKeyFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err // fs.ErrNotExist is handled by the caller
	}
	defer f.Close()
	// Check the file actually opened (after any symbolic link, as Kubernetes Secret
	// volumes use), not the name, so the check cannot be raced.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secrets: master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secrets: master key file %s is not a regular file", name)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("secrets: master key file %s has mode %#o: it must not be accessible by group or others (run: chmod 600 %s)", name, perm, name)
	}
	raw, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, fmt.Errorf("secrets: master key file: %w", err)
	}
	defer clear(raw)
	if len(raw) == KeySize {
		return bytes.Clone(raw), nil
	}
	key, err := decodeKey(string(raw))
	if err != nil {
		return nil, fmt.Errorf("secrets: master key file %s: %d raw bytes or %w", name, KeySize, err)
	}
	return key, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

func createKeyFile(dataDir, name string) ([]byte, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: create master key: %w", err)
	}
	key := make([]byte, KeySize)
	rand.Read(key)
	text := []byte(base64.StdEncoding.EncodeToString(key) + "\n")
	defer clear(text)

	tmp, err := os.CreateTemp(dataDir, ".master.key.tmp-*")
	if err != nil {
		return nil, fmt.Errorf("secrets: create master key: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 already; Chmod guards against a platform where it
	// does not, before any key byte is written.
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(text)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: create master key: %w", err)
	}
	// link(2) publishes the complete file or fails if another process got there
	// first, in which case its key is the one to use.
	if err := os.Link(tmp.Name(), name); err != nil {
		clear(key)
		if errors.Is(err, fs.ErrExist) {
			return readKeyFile(name)
		}
		return nil, fmt.Errorf("secrets: create master key: %w", err)
	}
	// Without this fsync a crash could lose the key file while secrets encrypted under
	// it survive.
	if err := syncDir(dataDir); err != nil {
		clear(key)
		return nil, fmt.Errorf("secrets: create master key: %w", err)
	}
	return key, nil
}
