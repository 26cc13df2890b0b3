// Package measure is the one implementation of Lanyard's measurements: the three
// digests that say what an agent is (its model, its system prompt and its tool
// manifest). The lanyard CLI computes them on the agent's side and the server
// recomputes or checks them on its side with this same code, so both always agree.
//
// Every digest is SHA-256 and is written "sha256:" followed by 64 lowercase hex
// digits (see FormatDigest and ParseDigest):
//
//   - model_digest: the root digest of the OpenSSF model-signing v1.0 format with
//     method "files" and hash_type "sha256" (see ModelDigest).
//   - prompt_digest: SHA-256 of the system prompt's bytes exactly as given (see
//     PromptDigest).
//   - tool_manifest_digest: SHA-256 of the RFC 8785 (JCS) canonical form of the
//     tool manifest in the MCP tools/list result shape (see ToolManifestDigest).
//
// docs/measurements.md shows how to reproduce each digest with standard tools.
package measure

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// digestPrefix is the algorithm label every digest is written with.
const digestPrefix = "sha256:"

// Measurements are an agent's three digests, as the agent reports them in its
// evidence and as a platform team registers them as reference values. A digest
// that was not measured is the empty string and is left out of the JSON form.
type Measurements struct {
	ModelDigest        string `json:"model_digest,omitempty"`
	PromptDigest       string `json:"prompt_digest,omitempty"`
	ToolManifestDigest string `json:"tool_manifest_digest,omitempty"`
}

// Measure computes the measurements of the model at modelPath (a directory or a
// single file), the system prompt in the file promptPath and the tool manifest in
// the file toolsPath. An empty path skips that measurement and leaves its digest
// empty; at least one path must be given.
func Measure(modelPath, promptPath, toolsPath string) (*Measurements, error) {
	if modelPath == "" && promptPath == "" && toolsPath == "" {
		return nil, errors.New("measure: nothing to measure: give a model, a prompt or a tool manifest")
	}
	var m Measurements
	if modelPath != "" {
		d, err := ModelDigest(modelPath)
		if err != nil {
			return nil, err
		}
		m.ModelDigest = d
	}
	if promptPath != "" {
		b, err := os.ReadFile(promptPath)
		if err != nil {
			return nil, fmt.Errorf("measure: prompt: %w", err)
		}
		m.PromptDigest = PromptDigest(b)
	}
	if toolsPath != "" {
		b, err := os.ReadFile(toolsPath)
		if err != nil {
			return nil, fmt.Errorf("measure: tool manifest: %w", err)
		}
		d, err := ToolManifestDigest(b)
		if err != nil {
			return nil, fmt.Errorf("%w (in %s)", err, toolsPath)
		}
		m.ToolManifestDigest = d
	}
	return &m, nil
}

// PromptDigest returns the prompt_digest of a system prompt: SHA-256 of its bytes
// exactly as given. No normalisation happens: a trailing newline, a byte order
// mark or CRLF line endings all change the digest, so measure the bytes the agent
// actually sends to its model.
func PromptDigest(prompt []byte) string {
	return FormatDigest(sha256.Sum256(prompt))
}

// FormatDigest writes a SHA-256 digest as "sha256:<64 lowercase hex>".
func FormatDigest(d [32]byte) string {
	return digestPrefix + hex.EncodeToString(d[:])
}

// ParseDigest reads a digest written "sha256:<64 lowercase hex>" and returns its
// 32 bytes. Anything else, including uppercase hex, another algorithm or a
// missing prefix, is refused so that one digest has exactly one spelling.
func ParseDigest(s string) ([32]byte, error) {
	var d [32]byte
	hexPart, ok := strings.CutPrefix(s, digestPrefix)
	if !ok {
		return d, fmt.Errorf("measure: digest %q: want the form sha256:<64 lowercase hex>", s)
	}
	if len(hexPart) != 2*len(d) {
		return d, fmt.Errorf("measure: digest %q: want 64 hex digits after sha256:, got %d", s, len(hexPart))
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return d, fmt.Errorf("measure: digest %q: want lowercase hex digits after sha256:", s)
		}
	}
	if _, err := hex.Decode(d[:], []byte(hexPart)); err != nil {
		return d, fmt.Errorf("measure: digest %q: %w", s, err)
	}
	return d, nil
}
