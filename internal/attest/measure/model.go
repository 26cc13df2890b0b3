package measure

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// File is one file of a model: its path relative to the model root, written with
// '/' separators (for a single-file model, the file's base name), and the SHA-256
// of its contents. It is the OpenSSF model-signing "resource" of method "files".
type File struct {
	Name   string
	Digest [32]byte
}

// ignoredAtRoot are the entries of a model directory that are not part of the
// model. They are the defaults of the OpenSSF model_signing library
// (model_signing.hashing.Config.hash ignores ".git/", ".gitattributes", ".github/"
// and ".gitignore" under the model path) plus its default signature file name,
// "model.sig", which the signing tool writes and must not hash. As in that library
// they match only directly under the model root, a matching directory is skipped
// with everything beneath it, and nothing is ignored for a single-file model.
var ignoredAtRoot = []string{".git", ".gitattributes", ".github", ".gitignore", "model.sig"}

// ModelDigest returns the model_digest of the model at path: the root digest of the
// OpenSSF model-signing v1.0 format with method "files" and hash_type "sha256",
// which is the sha256 of the single subject of the in-toto statement that the
// model_signing tool signs. It is RootDigest(ModelFiles(path)).
func ModelDigest(path string) (string, error) {
	files, err := ModelFiles(path)
	if err != nil {
		return "", err
	}
	return RootDigest(files), nil
}

// ModelFiles hashes every regular file of the model at path and returns them in
// the order the OpenSSF model_signing reference implementation lists them in its
// statement's predicate.resources: sorted by their '/'-separated relative path
// compared component by component, each component compared byte-wise. (The
// reference sorts pathlib.PurePosixPath values, which compare as lists of path
// components; for valid UTF-8 byte order is code point order. This differs from
// sorting the whole path strings whenever a name holds a byte below '/', such as
// '.' or '-': "tokenizer/vocab.txt" sorts before "tokenizer.json".)
//
// path may be a directory or a single regular file, whose one File is named by the
// file's base name. Entries listed in ignoredAtRoot are skipped. A symbolic link
// anywhere (path itself included), any other non-regular file, a name that is not
// valid UTF-8 or a model with no files left is an error naming the path.
func ModelFiles(path string) ([]File, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("measure: model: %w", err)
	}
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("measure: model: %s is a symbolic link; symlinks are refused", path)
	case info.Mode().IsRegular():
		name := filepath.Base(path)
		if !utf8.ValidString(name) {
			return nil, fmt.Errorf("measure: model: file name %q is not valid UTF-8", name)
		}
		d, err := hashFile(path, info)
		if err != nil {
			return nil, fmt.Errorf("measure: model: %w", err)
		}
		return []File{{Name: name, Digest: d}}, nil
	case !info.IsDir():
		return nil, fmt.Errorf("measure: model: %s is neither a regular file nor a directory", path)
	}

	var files []File
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == path {
			return nil
		}
		rel, err := filepath.Rel(path, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !strings.Contains(rel, "/") && slices.Contains(ignoredAtRoot, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !utf8.ValidString(rel) {
			return fmt.Errorf("path %q is not valid UTF-8", rel)
		}
		switch t := d.Type(); {
		case t&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link; symlinks are refused", p)
		case t.IsDir():
			return nil
		case !t.IsRegular():
			return fmt.Errorf("%s is not a regular file (%s)", p, t)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		digest, err := hashFile(p, fi)
		if err != nil {
			return err
		}
		files = append(files, File{Name: rel, Digest: digest})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("measure: model: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("measure: model: %s holds no regular files (after ignoring %s)", path, strings.Join(ignoredAtRoot, ", "))
	}
	slices.SortFunc(files, func(a, b File) int { return comparePaths(a.Name, b.Name) })
	return files, nil
}

// comparePaths orders '/'-separated paths component by component, as Python
// compares pathlib.PurePosixPath values: it compares bytes with '/' counted as
// lower than every other byte, which is the same as comparing the component
// lists, because a component holds neither '/' nor NUL.
func comparePaths(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
}

// RootDigest returns the root digest of files in the order given: SHA-256 over
// the concatenation of their raw 32-byte digests, written "sha256:<hex>". For a
// model measured by ModelFiles this is its model_digest; a verifier of a
// model-signing statement passes the predicate's resources in their listed order.
func RootDigest(files []File) string {
	h := sha256.New()
	for _, f := range files {
		h.Write(f.Digest[:])
	}
	var d [32]byte
	h.Sum(d[:0])
	return FormatDigest(d)
}

// hashFile returns the SHA-256 of the regular file at p, which the caller found
// with info (from lstat). The opened file must be that same file, so a file
// swapped for a symlink or a device between the walk and the read is refused.
func hashFile(p string, info fs.FileInfo) ([32]byte, error) {
	var d [32]byte
	f, err := os.Open(p)
	if err != nil {
		return d, err
	}
	defer f.Close()
	opened, err := f.Stat()
	if err != nil {
		return d, err
	}
	if !opened.Mode().IsRegular() || !os.SameFile(info, opened) {
		return d, fmt.Errorf("%s changed while it was being measured", p)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return d, fmt.Errorf("read %s: %w", p, err)
	}
	h.Sum(d[:0])
	return d, nil
}
