package main

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

func readJWKFile(t *testing.T, path string) jose.JSONWebKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var k jose.JSONWebKey
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k
}

func TestKeygen(t *testing.T) {
	for _, alg := range []string{"ES256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "agent")
			stdout, _, err := cliRun(t, "keygen", "--alg", alg, "--out", out)
			if err != nil {
				t.Fatal(err)
			}
			priv := readJWKFile(t, out+".jwk")
			if priv.IsPublic() || priv.Algorithm != alg || priv.Use != "sig" {
				t.Errorf("private JWK: public=%v alg=%s use=%s", priv.IsPublic(), priv.Algorithm, priv.Use)
			}
			tp, _ := priv.Thumbprint(crypto.SHA256)
			if priv.KeyID != base64.RawURLEncoding.EncodeToString(tp) {
				t.Errorf("kid %s is not the RFC 7638 thumbprint", priv.KeyID)
			}
			if st, _ := os.Stat(out + ".jwk"); st.Mode().Perm() != 0o600 {
				t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
			}
			set, err := readJWKS(out + ".jwks.json")
			if err != nil {
				t.Fatal(err)
			}
			pubJSON, _ := os.ReadFile(out + ".jwks.json")
			if len(set.Keys) != 1 || set.Keys[0].KeyID != priv.KeyID || set.Keys[0].Algorithm != alg ||
				strings.Contains(string(pubJSON), `"d"`) {
				t.Errorf("public set: %s", pubJSON)
			}
			for _, want := range []string{out + ".jwk", out + ".jwks.json", priv.KeyID} {
				if !strings.Contains(stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, stdout)
				}
			}
		})
	}
}

func TestKeygenRefusesToOverwrite(t *testing.T) {
	out := filepath.Join(t.TempDir(), "agent")
	if _, _, err := cliRun(t, "keygen", "--out", out); err != nil {
		t.Fatal(err)
	}
	first := readJWKFile(t, out+".jwk")
	_, _, err := cliRun(t, "keygen", "--out", out)
	if err == nil || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second keygen: %v", err)
	}
	if readJWKFile(t, out+".jwk").KeyID != first.KeyID {
		t.Fatal("refused keygen changed the key")
	}
	// Only the public half exists: still refused, and nothing is written.
	os.Remove(out + ".jwk")
	if _, _, err := cliRun(t, "keygen", "--out", out); err == nil {
		t.Fatal("keygen overwrote an existing public set")
	}
	if _, err := os.Stat(out + ".jwk"); err == nil {
		t.Fatal("a refused keygen left a private key behind")
	}

	os.WriteFile(out+".jwk", []byte("old"), 0o644)
	if _, _, err := cliRun(t, "keygen", "--out", out, "--force"); err != nil {
		t.Fatal(err)
	}
	if k := readJWKFile(t, out+".jwk"); k.KeyID == first.KeyID || k.IsPublic() {
		t.Error("--force did not write a new key")
	}
	if st, _ := os.Stat(out + ".jwk"); st.Mode().Perm() != 0o600 {
		t.Errorf("--force left mode %v, want 0600", st.Mode().Perm())
	}
}

func TestKeygenRejectsUnknownAlg(t *testing.T) {
	out := filepath.Join(t.TempDir(), "agent")
	_, _, err := cliRun(t, "keygen", "--alg", "HS256", "--out", out)
	if err == nil || !strings.Contains(err.Error(), "ES256, RS256 or PS256") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(out + ".jwk"); err == nil {
		t.Fatal("file written for a rejected alg")
	}
}
