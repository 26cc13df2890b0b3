//go:build ignore

// gen_fuzz_seeds writes the seed corpus of FuzzClientAssertion. Run from the module root:
//
//	go run ./internal/oauth/testdata/gen_fuzz_seeds.go
//
// The seeds carry fixed times (the fixture clock, 2030-06-01T12:00:00Z) and a client
// id no test registers: they exercise the parsing and refusal paths that come before
// the agent lookup. FuzzClientAssertion adds, at run time, seeds signed for the agent
// it registers, which reach the signature and claim checks.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	dir      = "internal/oauth/testdata/fuzz/FuzzClientAssertion"
	clientID = "agt_0000000000000000000000fuzz"
	aud      = "https://id.example.com/oauth2/token"
	iat      = 1906545600 // 2030-06-01T12:00:00Z
)

var enc = base64.RawURLEncoding.EncodeToString

func claims(extra string) string {
	return fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":%q,"iat":%d,"exp":%d,"jti":"seed-jti"%s}`, clientID, clientID, aud, iat, iat+60, extra)
}

func signES256(header, payload string) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		panic(err)
	}
	jws, err := s.Sign([]byte(payload))
	if err != nil {
		panic(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return out
}

func hs256(header, payload string) string {
	in := enc([]byte(header)) + "." + enc([]byte(payload))
	m := hmac.New(sha256.New, []byte("the-client-secret"))
	m.Write([]byte(in))
	return in + "." + enc(m.Sum(nil))
}

func main() {
	seeds := map[string]string{
		// A well-formed ES256 assertion whose signature is by a key nobody registered.
		"valid_looking_wrong_signature": signES256("", claims("")),
		"alg_none":                      enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(claims(""))) + ".",
		"alg_none_capitalised":          enc([]byte(`{"alg":"None"}`)) + "." + enc([]byte(claims(""))) + ".",
		"hs256":                         hs256(`{"alg":"HS256","typ":"JWT","kid":"k1"}`, claims("")),
		"crit":                          enc([]byte(`{"alg":"ES256","kid":"k1","crit":["b64"],"b64":false}`)) + "." + enc([]byte(claims(""))) + "." + enc(make([]byte, 64)),
		"huge":                          enc([]byte(`{"alg":"ES256"}`)) + "." + strings.Repeat("A", 9000) + "." + enc(make([]byte, 64)),
		"just_under_limit":              enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(claims(`,"pad":"`+strings.Repeat("p", 5900)+`"`))) + "." + enc(make([]byte, 64)),
		"empty":                         "",
		"dots":                          "..",
		"two_parts":                     enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(claims(""))),
		"jwe_five_parts":                enc([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM"}`)) + ".a.b.c.d",
		"json_serialization":            `{"payload":"` + enc([]byte(claims(""))) + `","protected":"` + enc([]byte(`{"alg":"ES256"}`)) + `","signature":"AA"}`,
		"header_not_json":               enc([]byte(`alg=ES256`)) + ".e30.AA",
		"claims_not_json":               enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(`not json`)) + "." + enc(make([]byte, 64)),
		"numbers_out_of_range":          enc([]byte(`{"alg":"ES256","kid":"k1"}`)) + "." + enc([]byte(`{"iss":"x","sub":"x","exp":1e400,"iat":-1e400,"nbf":"soon","aud":[1,2]}`)) + "." + enc(make([]byte, 64)),
		"nul_and_invalid_utf8_sub":      enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte("{\"iss\":\"a\\u0000b\xff\",\"sub\":\"a\\u0000b\xff\"}")) + "." + enc(make([]byte, 64)),
		"padded_base64":                 enc([]byte(`{"alg":"ES256"}`)) + "==." + enc([]byte(claims(""))) + "." + enc(make([]byte, 64)),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		panic(err)
	}
	for name, s := range seeds {
		body := "go test fuzz v1\nstring(" + strconv.Quote(s) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			panic(err)
		}
	}
}
