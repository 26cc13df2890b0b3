package keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary strings to Verify. Properties: it never panics; every
// refusal wraps ErrInvalidToken; and it accepts only the exact tokens the Manager
// signed — no re-encoding (base64 padding or trailing bits, header spelling, the
// (r, n−s) twin of an ECDSA signature) yields a second accepted string.
func FuzzVerify(f *testing.F) {
	e := newEnv(f)
	m := e.started(f)
	signed := map[string][]byte{} // token → payload
	add := func(alg, typ string, payload []byte) {
		tok := sign(f, m, alg, typ, payload)
		signed[tok] = payload
		f.Add(tok)
		if alg == ES256 {
			f.Add(withOtherS(f, tok))
		}
	}
	add(ES256, "at+jwt", claims)
	add(RS256, "at+jwt", claims)
	add(ES256, "JWT", []byte(`{}`))
	add(RS256, "application/at+jwt", []byte(`{"sub":"x"}`))

	es := sign(f, m, ES256, "at+jwt", claims)
	parts := strings.Split(es, ".")
	enc := base64.RawURLEncoding.EncodeToString
	for _, s := range []string{
		"", ".", "..", "...", "a.b.c", parts[0], parts[0] + "." + parts[1],
		parts[0] + "." + parts[1] + ".",
		enc([]byte(`{"alg":"none","kid":"x","typ":"JWT"}`)) + "." + parts[1] + ".",
		enc([]byte(`{"alg":"HS256","kid":"`+mustKID(f, m, ES256)+`","typ":"at+jwt"}`)) + "." + parts[1] + "." + parts[2],
		enc([]byte(`{"alg":"RS256","kid":"`+mustKID(f, m, ES256)+`","typ":"at+jwt"}`)) + "." + parts[1] + "." + parts[2],
		enc([]byte(`{"alg":"ES256","kid":"`+mustKID(f, m, ES256)+`","typ":"at+jwt","x":1}`)) + "." + parts[1] + "." + parts[2],
		parts[0] + "." + parts[1] + "." + parts[2] + "=",
		es + "." + parts[1],
		strings.Repeat("A", 100) + "." + strings.Repeat("B", 100) + "." + strings.Repeat("C", 86),
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, token string) {
		payload, typ, err := m.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error does not wrap ErrInvalidToken: %v", err)
			}
			if payload != nil || typ != "" {
				t.Fatal("payload or typ returned with an error")
			}
			return
		}
		want, ok := signed[token]
		if !ok {
			t.Fatalf("accepted a token the Manager never signed: %q", token)
		}
		if !bytes.Equal(payload, want) || typ == "" {
			t.Fatalf("accepted token returned payload %q typ %q", payload, typ)
		}
	})
}

func mustKID(t testing.TB, m *Manager, alg string) string {
	t.Helper()
	kid, ok := m.ActiveKID(alg)
	if !ok {
		t.Fatal("no active key")
	}
	return kid
}
