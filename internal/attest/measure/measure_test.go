package measure

import (
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPromptDigest(t *testing.T) {
	for _, p := range []string{"", "You are a helpful agent.", "You are a helpful agent.\n", "\ufeffBOM", "crlf\r\n"} {
		if got, want := PromptDigest([]byte(p)), sha256Hex(p); got != want {
			t.Errorf("PromptDigest(%q) = %s, want %s", p, got, want)
		}
	}
	if PromptDigest([]byte("a\n")) == PromptDigest([]byte("a\r\n")) {
		t.Error("PromptDigest normalised line endings; it must digest the bytes as given")
	}
	// Known answer: SHA-256 of the empty string.
	if got := PromptDigest(nil); got != "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("PromptDigest(nil) = %s", got)
	}
}

func TestParseDigest(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	good := FormatDigest(sum)
	got, err := ParseDigest(good)
	if err != nil || got != sum {
		t.Fatalf("ParseDigest(FormatDigest(d)) = %x, %v; want %x", got, err, sum)
	}
	bad := map[string]string{
		"empty":           "",
		"no prefix":       good[len("sha256:"):],
		"other algorithm": "sha512:" + good[len("sha256:"):],
		"uppercase label": "SHA256:" + good[len("sha256:"):],
		"uppercase hex":   "sha256:" + strings.ToUpper(good[len("sha256:"):]),
		"short":           good[:len(good)-1],
		"long":            good + "0",
		"not hex":         good[:len(good)-1] + "g",
		"space":           " " + good,
	}
	for name, s := range bad {
		if _, err := ParseDigest(s); err == nil {
			t.Errorf("%s: ParseDigest(%q) succeeded, want an error", name, s)
		}
	}
}

func TestMeasure(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, [][2]string{
		{"model/w.bin", "weights"},
		{"prompt.txt", "Be brief.\n"},
		{"tools.json", `{"tools":[{"name":"a"}]}`},
	})
	model, prompt, tools := filepath.Join(dir, "model"), filepath.Join(dir, "prompt.txt"), filepath.Join(dir, "tools.json")

	m, err := Measure(model, prompt, tools)
	if err != nil {
		t.Fatal(err)
	}
	want := Measurements{
		ModelDigest:        wantRoot("weights"),
		PromptDigest:       sha256Hex("Be brief.\n"),
		ToolManifestDigest: sha256Hex(`{"tools":[{"name":"a"}]}`),
	}
	if *m != want {
		t.Errorf("Measure = %+v, want %+v", *m, want)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"model_digest":"` + want.ModelDigest + `","prompt_digest":"` + want.PromptDigest + `","tool_manifest_digest":"` + want.ToolManifestDigest + `"}`
	if string(b) != wantJSON {
		t.Errorf("JSON = %s, want %s", b, wantJSON)
	}

	only, err := Measure("", prompt, "")
	if err != nil {
		t.Fatal(err)
	}
	if *only != (Measurements{PromptDigest: want.PromptDigest}) {
		t.Errorf("Measure(prompt only) = %+v", *only)
	}
	if b, _ := json.Marshal(only); string(b) != `{"prompt_digest":"`+want.PromptDigest+`"}` {
		t.Errorf("JSON of a partial measurement = %s; unmeasured digests must be left out", b)
	}

	if _, err := Measure("", "", ""); err == nil {
		t.Error("Measure with nothing to measure succeeded")
	}
	if _, err := Measure("", filepath.Join(dir, "missing"), ""); err == nil || !strings.Contains(err.Error(), "prompt") {
		t.Errorf("Measure(missing prompt) error = %v", err)
	}
	if err := os.WriteFile(tools, []byte(`{"tools":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Measure("", "", tools); err == nil || !strings.Contains(err.Error(), tools) {
		t.Errorf("Measure(bad tools) error = %v, want it to name %s", err, tools)
	}
}
