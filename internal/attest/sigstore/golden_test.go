package sigstore

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "regenerate testdata fixtures and the FuzzVerify seed corpus")

// Fixtures signed once by a VirtualSigstore and kept with its trusted_root.json, so
// the JSON trusted-root path and the fuzz seeds use real, stable signatures. Evidence
// is checked at its own verified timestamps, so the fixtures do not expire.
var fixtures = map[string]func(t *testing.T) []byte{}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoldenUpdate(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate testdata")
	}
	vs := newVS(t)
	files := map[string][]byte{"trusted_root.json": trustedRootJSON(t, vs, false)}
	f1, f2 := sum("config.json"), sum("weights")
	files["keyless_dsse.json"] = attest(t, vs, statementJSON(t, "https://lanyard.dev/measurements/v1", map[string]any{},
		subject("model", sum("model")), subject("prompt", sum("prompt"))))
	files["model_signing.json"] = attest(t, vs, modelStatement(t, modelRoot(f1, f2), f1, f2))
	e, err := vs.Sign(testSubject, testIssuer, []byte("artifact"))
	if err != nil {
		t.Fatal(err)
	}
	files["keyless_message.json"] = entityBundle(t, vs, e)
	k := newKeyPair(t)
	files["key.pem"] = k.pem(t)
	files["key_dsse.json"] = k.bundle(t, true, statementJSON(t, "p", nil, subject("a", sum("a"))))
	files["key_message.json"] = k.bundle(t, false, []byte("artifact"))
	for name, b := range files {
		if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".json") && name != "trusted_root.json" {
			seed := "go test fuzz v1\n[]byte(" + strconvQuote(b) + ")\n"
			if err := os.WriteFile(filepath.Join("testdata", "fuzz", "FuzzVerify", strings.TrimSuffix(name, ".json")), []byte(seed), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func goldenVerifiers(t testing.TB) (keyless, key *Verifier) {
	t.Helper()
	var err error
	if keyless, err = NewVerifier(fixture(t, "trusted_root.json"), Options{}); err != nil {
		t.Fatal(err)
	}
	if key, err = NewKeyVerifier(fixture(t, "key.pem"), Options{}); err != nil {
		t.Fatal(err)
	}
	return keyless, key
}

func TestGolden(t *testing.T) {
	keyless, key := goldenVerifiers(t)
	for _, name := range []string{"keyless_dsse.json", "model_signing.json", "keyless_message.json"} {
		res, err := keyless.Verify(fixture(t, name), alice)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "model_signing.json" && res.ModelRoot == "" {
			t.Fatalf("%s: no model root", name)
		}
		if _, err := key.Verify(fixture(t, name), nil); err == nil {
			t.Fatalf("%s verified with the key verifier", name)
		}
	}
	for _, name := range []string{"key_dsse.json", "key_message.json"} {
		if _, err := key.Verify(fixture(t, name), nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := keyless.Verify(fixture(t, name), alice); err == nil {
			t.Fatalf("%s verified with the keyless verifier", name)
		}
	}
}
