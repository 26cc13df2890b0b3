//go:build ignore

// gen_fuzz_seeds writes the seed corpus of FuzzRegisterDecode. Run from the module root:
//
//	go run ./internal/httpapi/testdata/gen_fuzz_seeds.go
package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const dir = "internal/httpapi/testdata/fuzz/FuzzRegisterDecode"

func main() {
	seeds := map[string]string{
		"valid": `{"name": "summariser", "namespace": "prod", "owner": "alice@example.com", "purpose": "summarise tickets", "risk_level": "low", ` +
			`"credential": {"type": "private_key_jwt", "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", ` +
			`"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}}, ` +
			`"allowed_scopes": ["tickets:read"], "allowed_resources": ["https://api.example.com"], "max_token_ttl": "10m", ` +
			`"reference": {"model_digest": "sha256:` + strings.Repeat("a", 64) + `", "tpm": {"ak_public": "AAAA", "pcrs": {"sha256": {"0": "` + strings.Repeat("00", 32) + `"}}}}}`,
		"valid_minimal":        `{"name":"a","namespace":"p","owner":"o","credential":{"type":"client_secret"}}`,
		"unknown_field":        `{"name":"a","namespace":"p","is_admin":true}`,
		"unknown_nested_field": `{"credential":{"type":"client_secret","secret":"hunter2"}}`,
		"case_variant_field":   `{"NAME":"a","Name":"b"}`,
		"trailing_data":        `{"name":"a"} {"name":"b"}`,
		"trailing_garbage":     `{"name":"a"}garbage`,
		"trailing_bracket":     `{"name":"a"}]`,
		"wrong_types":          `{"name":1,"pending":"yes","allowed_scopes":"a b","credential":[]}`,
		"wrong_root_type":      `["name","a"]`,
		"null":                 `null`,
		"number_overflow":      `{"name":"a","pending":1e999}`,
		"deep_nesting":         `{"reference":{"tpm":{"pcrs":` + strings.Repeat(`{"a":`, 5000) + `{}` + strings.Repeat(`}`, 5000) + `}}}`,
		"deep_arrays":          strings.Repeat("[", 12000) + strings.Repeat("]", 12000),
		"invalid_utf8":         "{\"name\":\"\xff\xfe\",\"owner\":\"\xc0\x80\"}",
		"nul_and_controls":     `{"name":"a\u0000b","owner":"\u001b[31mred"}`,
		"duplicate_keys":       `{"name":"a","name":"b"}`,
		"empty":                ``,
		"bom":                  "\xef\xbb\xbf{\"name\":\"a\"}",
		"truncated":            `{"name":"a","credential":{"type":"clie`,
		"empty_key":            `{"":0 }`,
		"bracket_then_object":  `{"name":"a"}] {"name":"b","is_admin":true}`,
	}
	for name, s := range seeds {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(s) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			panic(err)
		}
	}
}
