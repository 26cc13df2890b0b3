package measure

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docPath is the page that explains how to reproduce the measurements.
const docPath = "../../../docs/measurements.md"

// exampleDir holds the worked example of docs/measurements.md.
const exampleDir = "testdata/example"

// TestDocDigests keeps docs/measurements.md from going stale: every digest the page
// states for the worked example must be the one this package computes.
func TestDocDigests(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Measure(filepath.Join(exampleDir, "model"), filepath.Join(exampleDir, "prompt.txt"), filepath.Join(exampleDir, "tools.json"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := ModelFiles(filepath.Join(exampleDir, "model"))
	if err != nil {
		t.Fatal(err)
	}

	// "model_digest:         sha256:…" lines (lanyard measure output) and
	// "`model_digest` is `sha256:…`" sentences.
	labelled := regexp.MustCompile("(model_digest|prompt_digest|tool_manifest_digest)`?(?::| is)\\s+`?(sha256:[0-9a-f]{64})")
	want := map[string]string{
		"model_digest":         m.ModelDigest,
		"prompt_digest":        m.PromptDigest,
		"tool_manifest_digest": m.ToolManifestDigest,
	}
	seen := map[string]int{}
	for _, match := range labelled.FindAllStringSubmatch(string(doc), -1) {
		seen[match[1]]++
		if match[2] != want[match[1]] {
			t.Errorf("%s: the doc says %s %s, the package computes %s", docPath, match[1], match[2], want[match[1]])
		}
	}
	for label := range want {
		if seen[label] < 2 {
			t.Errorf("%s: want %s stated at least twice (measure output and its section), found %d", docPath, label, seen[label])
		}
	}

	// "<64 hex>  <name>" lines, as sha256sum prints them.
	byName := map[string]string{
		"prompt.txt": strings.TrimPrefix(m.PromptDigest, "sha256:"),
	}
	for _, f := range files {
		byName[f.Name] = hex.EncodeToString(f.Digest[:])
	}
	sums := regexp.MustCompile(`(?m)^([0-9a-f]{64})  (\S+)$`)
	n := 0
	for _, match := range sums.FindAllStringSubmatch(string(doc), -1) {
		name := match[2]
		if name == "-" {
			// stdin digests: the model root or the canonical tool manifest.
			if match[1] != strings.TrimPrefix(m.ModelDigest, "sha256:") && match[1] != strings.TrimPrefix(m.ToolManifestDigest, "sha256:") {
				t.Errorf("%s: %s  - is neither the model root nor the tool manifest digest", docPath, match[1])
			}
			n++
			continue
		}
		w, ok := byName[name]
		if !ok {
			t.Errorf("%s: digest line for %q, which is not in the example", docPath, name)
			continue
		}
		if match[1] != w {
			t.Errorf("%s: the doc says %s  %s, want %s", docPath, match[1], name, w)
		}
		n++
	}
	if n < len(files)+3 {
		t.Errorf("%s: found %d sha256sum lines, want at least %d", docPath, n, len(files)+3)
	}
}

// TestDocCommands runs every command block of docs/measurements.md marked
// <!-- doctest --> in the example directory and compares what it prints with the
// text block that follows it. A block whose tools are not installed is skipped.
func TestDocCommands(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	blocks := regexp.MustCompile("(?s)<!-- doctest -->\n```sh\n(.*?)```\n\n```text\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 3 {
		t.Fatalf("%s: found %d doctest blocks, want 3", docPath, len(blocks))
	}
	for i, b := range blocks {
		script, want := string(b[1]), string(b[2])
		t.Run(strings.SplitN(script, "\n", 2)[0], func(t *testing.T) {
			for _, tool := range []string{"find", "sort", "sha256sum", "xxd", "node", "tr", "cut"} {
				if strings.Contains(script, tool) {
					if _, err := exec.LookPath(tool); err != nil {
						t.Skipf("block %d needs %s: %v", i, tool, err)
					}
				}
			}
			work := t.TempDir()
			if err := os.CopyFS(work, os.DirFS(exampleDir)); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bash, "-eo", "pipefail", "-c", script)
			cmd.Dir = work
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					t.Fatalf("block %d failed: %v\n%s", i, err, stderr.String())
				}
				t.Fatal(err)
			}
			if stdout.String() != want {
				t.Errorf("block %d printed:\n%s\nthe doc shows:\n%s", i, stdout.String(), want)
			}
		})
	}
}
