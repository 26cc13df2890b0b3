package measure

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gowebpki/jcs"
)

// ToolManifestDigest returns the tool_manifest_digest of a tool manifest: SHA-256
// of its RFC 8785 (JCS) canonical JSON. Key order, insignificant whitespace,
// escapes and number spellings therefore do not matter; any change to a value,
// such as a tool's description ("tool poisoning"), changes the digest.
//
// The manifest must be a whole MCP tools/list result: a JSON object whose "tools"
// member is an array of objects, each with a non-empty string "name"
// ({"tools":[{"name","description","inputSchema",...}]}). Everything in it is
// digested, including members this package does not know. It is refused if it is
// not valid I-JSON (RFC 7493: invalid UTF-8, a lone surrogate or a duplicate
// object key anywhere), if it has another shape, or if it carries a non-empty
// "nextCursor", because then it is only one page of the agent's tools.
func ToolManifestDigest(manifest []byte) (string, error) {
	canonical, err := CanonicalToolManifest(manifest)
	if err != nil {
		return "", err
	}
	return FormatDigest(sha256.Sum256(canonical)), nil
}

// CanonicalToolManifest checks a tool manifest as ToolManifestDigest does and
// returns its RFC 8785 canonical form: the exact bytes whose SHA-256 is the
// tool_manifest_digest.
func CanonicalToolManifest(manifest []byte) ([]byte, error) {
	if len(manifest) == 0 {
		return nil, errors.New("measure: tool manifest: empty")
	}
	// jcs.Transform parses the whole input strictly (valid UTF-8, no lone
	// surrogates, no trailing data) and refuses duplicate object keys, which
	// RFC 8785 section 3.1 (through I-JSON) forbids; it compares keys after
	// unescaping, so {"a":1,"\u0061":2} is refused too.
	canonical, err := jcs.Transform(manifest)
	if err != nil {
		return nil, fmt.Errorf("measure: tool manifest: not canonicalizable JSON (RFC 8785): %w", err)
	}
	if err := checkToolsList(canonical); err != nil {
		return nil, fmt.Errorf("measure: tool manifest: %w", err)
	}
	return canonical, nil
}

// checkToolsList checks that doc, already valid canonical JSON, has the shape of
// an MCP tools/list result.
func checkToolsList(doc []byte) error {
	if doc[0] != '{' {
		return errors.New(`want a JSON object {"tools":[...]} (an MCP tools/list result)`)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return err
	}
	rawTools, ok := top["tools"]
	if !ok {
		return errors.New(`no "tools" member: want {"tools":[...]} (an MCP tools/list result)`)
	}
	if rawTools[0] != '[' {
		return errors.New(`"tools" is not an array`)
	}
	if c, ok := top["nextCursor"]; ok && !bytes.Equal(c, []byte(`null`)) && !bytes.Equal(c, []byte(`""`)) {
		return errors.New(`"nextCursor" is set: this is one page of a paginated tools/list; measure the concatenation of every page`)
	}
	var tools []json.RawMessage
	if err := json.Unmarshal(rawTools, &tools); err != nil {
		return err
	}
	for i, raw := range tools {
		if raw[0] != '{' {
			return fmt.Errorf("tools[%d] is not an object", i)
		}
		var tool map[string]json.RawMessage
		if err := json.Unmarshal(raw, &tool); err != nil {
			return err
		}
		rawName, ok := tool["name"]
		if !ok {
			return fmt.Errorf(`tools[%d] has no "name"`, i)
		}
		var name string
		if rawName[0] != '"' || json.Unmarshal(rawName, &name) != nil {
			return fmt.Errorf(`tools[%d].name is not a string`, i)
		}
		if name == "" {
			return fmt.Errorf(`tools[%d].name is empty`, i)
		}
	}
	return nil
}
