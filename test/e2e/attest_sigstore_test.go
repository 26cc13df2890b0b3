package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/lanyardhq/lanyard/internal/config"
)

// The Sigstore fixtures of internal/attest/sigstore: bundles signed once by sigstore-go's
// VirtualSigstore (keyless: certificate from its Fulcio, Rekor entry, timestamp) for
// alice@example.com at https://accounts.example.com, with the matching trusted_root.json.
const sigstoreFixtures = "../../internal/attest/sigstore/testdata/"

func hexSum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// readFixture reads one of the Sigstore fixtures.
func readFixture(t *testing.T, name string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(sigstoreFixtures + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// modelSigningRoot is the model digest the model-signing fixture proves: its model has
// two files, config.json and weights, whose contents are their own names; the root is
// SHA-256 over the concatenated file digests.
func modelSigningRoot() string {
	root := sha256.Sum256(append(hexSum("config.json"), hexSum("weights")...))
	return "sha256:" + hex.EncodeToString(root[:])
}

// TestAttestationSigstore: an OpenSSF model-signing bundle from an allowed signer proves
// the model digest; a bundle over other digests, or from a signer the policy does not
// name, does not.
func TestAttestationSigstore(t *testing.T) {
	e := startWith(t, "", func(c *config.Config) { c.SigstoreTrustedRoot = sigstoreFixtures + "trusted_root.json" })
	read := func(name string) json.RawMessage { return readFixture(t, name) }
	model := modelSigningRoot()

	register := func(name, subject string) registered {
		return e.registerJWT(t, name, map[string]any{"reference": map[string]any{
			"model_digest": model,
			"sigstore":     []map[string]string{{"issuer": "https://accounts.example.com", "subject": subject}},
		}})
	}
	a := register("signed-model", "alice@example.com")
	attestWith := func(a registered, bundles ...json.RawMessage) verdict {
		body := e.attestBody(t, a, e.challenge(t, a), map[string]string{"model_digest": model})
		body["sigstore_bundles"] = bundles
		return e.attest(t, body)
	}

	v := attestWith(a, read("model_signing.json"))
	if v.Status != "affirming" {
		t.Fatalf("model-signing bundle: %+v", v)
	}
	if r := e.tokenJWT(t, a, nil); r.status != 200 || jwtClaims(t, r.json(t)["access_token"].(string))["att"].(map[string]any)["host"] != "sigstore" {
		t.Fatalf("token: %d %s", r.status, r.body)
	}

	// A valid bundle that covers other digests does not prove the model.
	if f := attestWith(a, read("keyless_dsse.json")).failed(); f["sigstore.model_signed"] == "" || len(f) != 1 {
		t.Fatalf("bundle over other digests: failed %v, want only sigstore.model_signed", f)
	}
	// No bundle at all.
	if f := attestWith(a).failed(); f["sigstore"] == "" {
		t.Fatalf("no bundle: failed %v", f)
	}
	// The same bundle for an agent whose policy names another signer.
	b := register("other-signer", "bob@example.com")
	f := attestWith(b, read("model_signing.json")).failed()
	if !strings.Contains(f["sigstore.bundle[0]"], "alice@example.com") || f["sigstore.model_signed"] == "" {
		t.Fatalf("wrong identity: failed %v", f)
	}
}

// TestAttestationSigstorePolicy: signer identities given as anchored regular expressions,
// and a policy that requires the prompt to be signed as well as the model.
func TestAttestationSigstorePolicy(t *testing.T) {
	e := startWith(t, "", func(c *config.Config) { c.SigstoreTrustedRoot = sigstoreFixtures + "trusted_root.json" })
	read := func(name string) json.RawMessage { return readFixture(t, name) }
	m := map[string]string{
		"model_digest": modelSigningRoot(),
		// keyless_dsse.json is an in-toto statement whose subjects include sha256("prompt").
		"prompt_digest": "sha256:" + hex.EncodeToString(hexSum("prompt")),
	}
	register := func(name string, signer map[string]string) registered {
		return e.registerJWT(t, name, map[string]any{"reference": map[string]any{
			"model_digest": m["model_digest"], "prompt_digest": m["prompt_digest"],
			"sigstore":       []map[string]string{signer},
			"require_signed": []string{"model_digest", "prompt_digest"},
		}})
	}
	attestWith := func(a registered, bundles ...json.RawMessage) verdict {
		body := e.attestBody(t, a, e.challenge(t, a), m)
		body["sigstore_bundles"] = bundles
		return e.attest(t, body)
	}

	a := register("regexp-signer", map[string]string{"issuer": "https://accounts.example.com", "subject_regexp": `[a-z]+@example\.com`})
	if f := attestWith(a, read("model_signing.json")).failed(); len(f) != 1 || !strings.Contains(f["sigstore.prompt_signed"], "prompt_digest") {
		t.Fatalf("model signed, prompt not: failed %v, want only sigstore.prompt_signed", f)
	}
	if v := attestWith(a, read("model_signing.json"), read("keyless_dsse.json")); v.Status != "affirming" {
		t.Fatalf("model and prompt signed by a matching identity: %+v", v)
	}

	// The pattern is anchored: "alice@example.com" does not match "alice@example".
	b := register("anchored-regexp", map[string]string{"issuer_regexp": `https://accounts\.example\.com`, "subject_regexp": `alice@example`})
	f := attestWith(b, read("model_signing.json"), read("keyless_dsse.json")).failed()
	if !strings.Contains(f["sigstore.bundle[0]"], "~alice@example") || f["sigstore.model_signed"] == "" || f["sigstore.prompt_signed"] == "" {
		t.Fatalf("unanchored match: failed %v", f)
	}

	// Registration refuses what the verifier could not use.
	for _, tt := range []struct {
		ref   map[string]any
		field string
	}{
		{map[string]any{"model_digest": m["model_digest"], "sigstore": []map[string]string{{"issuer": "https://a.example", "subject_regexp": "(unclosed"}}}, "reference.sigstore[0].subject_regexp"},
		{map[string]any{"model_digest": m["model_digest"], "sigstore": []map[string]string{{"subject": "x@example.com"}}}, "reference.sigstore[0].issuer"},
		{map[string]any{"model_digest": m["model_digest"], "require_signed": []string{"model_digest"}}, "reference.require_signed"},
		{map[string]any{"model_digest": m["model_digest"], "require_signed": []string{"weights"},
			"sigstore": []map[string]string{{"issuer": "https://a.example", "subject": "x"}}}, "reference.require_signed[0]"},
	} {
		r := e.api("POST", "/v1/agents", map[string]any{
			"name": "bad-policy", "namespace": "default", "owner": "team",
			"credential": map[string]any{"type": "client_secret"}, "reference": tt.ref,
		})
		if r.status != 400 || !strings.Contains(string(r.body), `"field":"`+tt.field+`"`) {
			t.Errorf("reference %v: %d %s, want 400 naming %s", tt.ref, r.status, r.body, tt.field)
		}
	}
}
