package measure

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// writeTree creates files (relative '/'-separated path -> contents) under dir, in
// the order given by the slice so that tests can create them in any order.
func writeTree(t *testing.T, dir string, files [][2]string) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f[0]))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f[1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// wantRoot computes the expected root digest directly with crypto/sha256:
// SHA-256 over the concatenated SHA-256 digests of contents, in the order given.
func wantRoot(contents ...string) string {
	h := sha256.New()
	for _, c := range contents {
		d := sha256.Sum256([]byte(c))
		h.Write(d[:])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func TestModelDigest(t *testing.T) {
	tests := []struct {
		name      string
		files     [][2]string // created in this order
		wantNames []string
		want      string
	}{
		{
			name: "three files with a nested dir and ignored entries",
			files: [][2]string{
				{"tokenizer.json", "tok"},
				{"tokenizer/vocab.txt", "vocab"},
				{"config.json", "cfg"},
				{".git/HEAD", "ref: refs/heads/main\n"},
				{".git/objects/ab/cdef", "blob"},
				{".github/workflows/ci.yml", "on: push"},
				{".gitattributes", "*.bin filter=lfs"},
				{".gitignore", "*.tmp"},
				{"model.sig", `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`},
			},
			// Component order: "tokenizer" < "tokenizer.json", so the file in the
			// tokenizer/ directory comes before tokenizer.json.
			wantNames: []string{"config.json", "tokenizer/vocab.txt", "tokenizer.json"},
			want:      wantRoot("cfg", "vocab", "tok"),
		},
		{
			name: "order is by path whatever the creation order",
			files: [][2]string{
				{"z", "z"}, {"b/2", "b2"}, {"a-b", "ab"}, {"a/c", "ac"}, {"B", "B"}, {"a b/x", "ax"}, {"b/10", "b10"},
			},
			wantNames: []string{"B", "a/c", "a b/x", "a-b", "b/10", "b/2", "z"},
			want:      wantRoot("B", "ac", "ax", "ab", "b10", "b2", "z"),
		},
		{
			name: "ignore rules apply at the model root only",
			files: [][2]string{
				{"weights.bin", "w"},
				{"sub/.gitignore", "nested gitignore is model content"},
				{"sub/.git/config", "nested .git is model content"},
				{"sub/model.sig", "nested model.sig is model content"},
				{".gitmodules", "not in the ignore list"},
				{".git", "a .git file (worktree link) is ignored too"},
				{".github", "so is a .github file"},
			},
			wantNames: []string{".gitmodules", "sub/.git/config", "sub/.gitignore", "sub/model.sig", "weights.bin"},
			want: wantRoot("not in the ignore list", "nested .git is model content",
				"nested gitignore is model content", "nested model.sig is model content", "w"),
		},
		{
			name:      "non-ASCII names sort by code point",
			files:     [][2]string{{"é", "e-acute"}, {"z", "z"}, {"€/x", "euro"}},
			wantNames: []string{"z", "é", "€/x"},
			want:      wantRoot("z", "e-acute", "euro"),
		},
		{
			name:      "an empty file is a file",
			files:     [][2]string{{"empty", ""}},
			wantNames: []string{"empty"},
			want:      wantRoot(""),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			if err := os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o755); err != nil {
				t.Fatal(err)
			}
			files, err := ModelFiles(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range files {
				names = append(names, f.Name)
			}
			if !slices.Equal(names, tt.wantNames) {
				t.Errorf("ModelFiles names = %q, want %q", names, tt.wantNames)
			}
			got, err := ModelDigest(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ModelDigest = %s, want %s", got, tt.want)
			}
			if rd := RootDigest(files); rd != got {
				t.Errorf("RootDigest(ModelFiles) = %s, ModelDigest = %s", rd, got)
			}
		})
	}
}

// TestModelOrderIsNotStringOrder pins the one place where the OpenSSF reference
// order (path components) differs from sorting whole path strings byte-wise.
func TestModelOrderIsNotStringOrder(t *testing.T) {
	names := []string{"tokenizer.json", "tokenizer/vocab.txt", "a-b", "a/c"}
	byString := slices.Clone(names)
	sort.Strings(byString)
	byPath := slices.Clone(names)
	slices.SortFunc(byPath, comparePaths)
	if want := []string{"a-b", "a/c", "tokenizer.json", "tokenizer/vocab.txt"}; !slices.Equal(byString, want) {
		t.Fatalf("string order = %q, want %q", byString, want)
	}
	if want := []string{"a/c", "a-b", "tokenizer/vocab.txt", "tokenizer.json"}; !slices.Equal(byPath, want) {
		t.Errorf("path order = %q, want %q", byPath, want)
	}
}

func TestComparePaths(t *testing.T) {
	tests := []struct {
		a, b string
		want int // sign
	}{
		{"a", "a", 0},
		{"a", "b", -1},
		{"a", "a/b", -1},
		{"a/b", "a.b", -1},
		{"a/b", "a b", -1},
		{"a/z", "ab", -1},
		{"B", "a", -1},
		{"a/b/c", "a/b", 1},
		{"é", "z", 1},
	}
	for _, tt := range tests {
		got := comparePaths(tt.a, tt.b)
		if sign(got) != tt.want {
			t.Errorf("comparePaths(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.want)
		}
		if sign(comparePaths(tt.b, tt.a)) != -tt.want {
			t.Errorf("comparePaths(%q, %q) is not antisymmetric", tt.b, tt.a)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestModelDigestSingleFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(p, []byte("weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := ModelFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Name != "model.safetensors" || files[0].Digest != sha256.Sum256([]byte("weights")) {
		t.Errorf("ModelFiles(file) = %+v", files)
	}
	got, err := ModelDigest(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRoot("weights"); got != want {
		t.Errorf("ModelDigest(file) = %s, want %s", got, want)
	}
	// A single file is the same as a directory holding only that file.
	if d, err := ModelDigest(dir); err != nil || d != got {
		t.Errorf("ModelDigest(dir with the one file) = %s, %v; want %s", d, err, got)
	}
}

func TestModelDigestRefuses(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the model path
		wantErr string
	}{
		{
			name:    "empty directory",
			setup:   func(t *testing.T, dir string) string { return dir },
			wantErr: "holds no regular files",
		},
		{
			name: "only empty directories",
			setup: func(t *testing.T, dir string) string {
				if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			wantErr: "holds no regular files",
		},
		{
			name: "only ignored entries",
			setup: func(t *testing.T, dir string) string {
				writeTree(t, dir, [][2]string{{".git/HEAD", "x"}, {".gitignore", "x"}, {"model.sig", "x"}})
				return dir
			},
			wantErr: "holds no regular files",
		},
		{
			name: "symlink to a file in a nested dir",
			setup: func(t *testing.T, dir string) string {
				writeTree(t, dir, [][2]string{{"a/real", "x"}})
				symlink(t, "real", filepath.Join(dir, "a", "link"))
				return dir
			},
			wantErr: filepath.Join("a", "link") + " is a symbolic link",
		},
		{
			name: "symlink to a directory",
			setup: func(t *testing.T, dir string) string {
				writeTree(t, dir, [][2]string{{"a/real", "x"}})
				symlink(t, "a", filepath.Join(dir, "b"))
				return dir
			},
			wantErr: "b is a symbolic link",
		},
		{
			name: "dangling symlink",
			setup: func(t *testing.T, dir string) string {
				writeTree(t, dir, [][2]string{{"f", "x"}})
				symlink(t, "nowhere", filepath.Join(dir, "dangling"))
				return dir
			},
			wantErr: "dangling is a symbolic link",
		},
		{
			name: "the model path itself is a symlink",
			setup: func(t *testing.T, dir string) string {
				writeTree(t, dir, [][2]string{{"m/f", "x"}})
				symlink(t, "m", filepath.Join(dir, "link"))
				return filepath.Join(dir, "link")
			},
			wantErr: "link is a symbolic link",
		},
		{
			name: "missing path",
			setup: func(t *testing.T, dir string) string {
				return filepath.Join(dir, "missing")
			},
			wantErr: "no such file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.setup(t, t.TempDir())
			d, err := ModelDigest(p)
			if err == nil {
				t.Fatalf("ModelDigest = %s, want an error containing %q", d, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "measure: model: ") {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("cannot create symlinks here: %v", err)
	}
}

// TestModelDigestMatchesOpenSSFStatement cross-checks ModelDigest against the root
// digest the OpenSSF model_signing tool (sigstore/model-transparency, predicate
// https://model_signing/signature/v1.0) puts in the subject of its statement.
//
// How the reference implementation gets there, for the model below:
//
//  1. model_signing.hashing.Config().hash(model) walks model.glob("**/*"), drops
//     "<model>/.git", ".gitattributes", ".github", ".gitignore" (and the signature
//     path the signing CLI adds) with everything beneath them, and hashes each
//     remaining regular file with SHA-256 into a FileManifestItem keyed by
//     PurePosixPath(relative path).
//  2. Manifest.resource_descriptors() yields sorted(items): PurePosixPath compares
//     as a tuple of components, so the order is
//     "d0/f00" < "d0/f01" < "d0.txt" ("d0" < "d0.txt" in the first component).
//  3. signing.Payload feeds each descriptor's raw digest to one SHA-256 in that
//     order and writes the result as subject[0].digest.sha256, with the resources
//     in predicate.resources in the same order.
//
// So the expected bytes are
//
//	sha256( sha256("f00\n") || sha256("f01\n") || sha256("top\n") )
//
// where || is concatenation of the raw 32-byte digests: 96 bytes in total.
// The hex below was computed outside Go with Python's hashlib and the same
// sorted(PurePosixPath) ordering the reference uses.
func TestModelDigestMatchesOpenSSFStatement(t *testing.T) {
	const wantSubjectSHA256 = "481efbaef191060ead91bba8239f6ebe77a9c493857ec71470ce85e2ae848bde"
	dir := t.TempDir()
	writeTree(t, dir, [][2]string{
		{"d0.txt", "top\n"},
		{"d0/f01", "f01\n"},
		{"d0/f00", "f00\n"},
		{".gitattributes", "* text=auto\n"},
	})
	files, err := ModelFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ModelDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRoot("f00\n", "f01\n", "top\n"); got != want {
		t.Fatalf("ModelDigest = %s, want %s (from crypto/sha256)", got, want)
	}
	if got != "sha256:"+wantSubjectSHA256 {
		t.Errorf("ModelDigest = %s, want the statement's subject digest sha256:%s", got, wantSubjectSHA256)
	}
	// The statement's predicate.resources, as the reference writes them; a verifier
	// recomputes the subject digest from them in their listed order.
	resources := []struct{ name, digest string }{
		{"d0/f00", hexSum("f00\n")},
		{"d0/f01", hexSum("f01\n")},
		{"d0.txt", hexSum("top\n")},
	}
	if len(files) != len(resources) {
		t.Fatalf("ModelFiles = %d files, want %d", len(files), len(resources))
	}
	var listed []File
	for i, r := range resources {
		if files[i].Name != r.name || hex.EncodeToString(files[i].Digest[:]) != r.digest {
			t.Errorf("ModelFiles[%d] = %s %x, want %s %s", i, files[i].Name, files[i].Digest, r.name, r.digest)
		}
		var d [32]byte
		b, _ := hex.DecodeString(r.digest)
		copy(d[:], b)
		listed = append(listed, File{Name: r.name, Digest: d})
	}
	if rd := RootDigest(listed); rd != got {
		t.Errorf("RootDigest(resources) = %s, want %s", rd, got)
	}
}

func hexSum(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}
