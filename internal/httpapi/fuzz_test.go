package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
)

// registerKeys are the JSON names of lifecycle.RegisterRequest's fields.
var registerKeys = map[string]bool{
	"name": true, "namespace": true, "owner": true, "purpose": true, "risk_level": true,
	"pending": true, "credential": true, "token_alg": true, "reference": true,
	"allowed_scopes": true, "allowed_resources": true, "max_token_ttl": true,
	"attestation_ttl": true, "can_introspect": true,
}

// FuzzRegisterDecode feeds arbitrary bytes to the strict decoder of POST /v1/agents.
// It must never panic; it either decodes exactly one JSON object with known fields,
// or returns a 400 problem that says why. The seed corpus is in
// testdata/fuzz/FuzzRegisterDecode.
func FuzzRegisterDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var req lifecycle.RegisterRequest
		err := decodeJSON(body, &req)
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) || p != err {
				t.Fatalf("decodeJSON returned %T %v, want a *Problem", err, err)
			}
			if p.Status != http.StatusBadRequest || p.Title != "Bad Request" || p.Detail == "" {
				t.Fatalf("problem %+v, want a 400 with a detail", p)
			}
			switch p.Type {
			case "urn:lanyard:problem:malformed-json":
				if len(p.Errors) != 0 {
					t.Errorf("malformed-json problem names fields %v", p.Errors)
				}
			case "urn:lanyard:problem:validation":
				// One field, named as the body spells it (which may be "": {"":0}).
				if len(p.Errors) != 1 || p.Errors[0].Detail == "" {
					t.Errorf("validation problem errors %v, want one field with a detail", p.Errors)
				}
			default:
				t.Errorf("problem type %s", p.Type)
			}
			if _, err := json.Marshal(p); err != nil {
				t.Errorf("the problem cannot be rendered: %v", err)
			}
			return
		}

		// Accepted: the body is exactly one JSON value ...
		if !json.Valid(body) {
			if trailingClosers(body) {
				t.Fatal("regression of a fixed bug: problem.go decodeJSON accepts a JSON value followed by ] or } and anything after it (dec.More() is false before them)")
			}
			t.Fatalf("decodeJSON accepted %q, which is not one JSON value", body)
		}
		// ... an object (or null) whose members are all fields of RegisterRequest
		// (encoding/json matches names case-insensitively).
		var members map[string]json.RawMessage
		if err := json.Unmarshal(body, &members); err != nil {
			t.Fatalf("decodeJSON accepted %q, which is not an object: %v", body, err)
		}
		for k := range members {
			if !registerKeys[strings.ToLower(k)] {
				t.Errorf("decodeJSON accepted unknown field %q", k)
			}
		}
	})
}

// trailingClosers reports whether body is one JSON value followed by ']' or '}' (after
// white space): whatever comes after that is what decodeJSON fails to see.
func trailingClosers(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return false
	}
	rest := bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")
	return len(rest) > 0 && (rest[0] == ']' || rest[0] == '}')
}
