package sigstore

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/protobuf/encoding/protojson"
)

func newVS(t testing.TB) *ca.VirtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func keylessVerifier(t testing.TB, vs *ca.VirtualSigstore, opts Options) *Verifier {
	t.Helper()
	opts.SkipSCT = true // VirtualSigstore's Fulcio embeds no SCTs
	v, err := NewVerifierFromMaterial(vs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func attest(t testing.TB, vs *ca.VirtualSigstore, stmt []byte) []byte {
	t.Helper()
	e, err := vs.Attest(testSubject, testIssuer, stmt)
	if err != nil {
		t.Fatal(err)
	}
	return entityBundle(t, vs, e)
}

var alice = []Identity{{Issuer: testIssuer, Subject: testSubject}}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected an error containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func TestKeylessDSSETwoSubjects(t *testing.T) {
	vs := newVS(t)
	a, b := sum("model"), sum("prompt")
	stmt := statementJSON(t, "https://lanyard.dev/measurements/v1", map[string]any{"x": 1},
		subject("model", a), subject("prompt", b))
	bundle := attest(t, vs, stmt)

	for name, v := range map[string]*Verifier{
		"material": keylessVerifier(t, vs, Options{}),
		"json": func() *Verifier {
			v, err := NewVerifier(trustedRootJSON(t, vs, false), Options{})
			if err != nil {
				t.Fatal(err)
			}
			return v
		}(),
		"require-both": keylessVerifier(t, vs, Options{RequireTlog: true, RequireTimestamp: true}),
	} {
		t.Run(name, func(t *testing.T) {
			res, err := v.Verify(bundle, alice)
			if err != nil {
				t.Fatal(err)
			}
			if res.Subjects[a] != "model" || res.Subjects[b] != "prompt" || len(res.Subjects) != 2 {
				t.Fatalf("subjects %v", res.Subjects)
			}
			if res.Signer != (Identity{Issuer: testIssuer, Subject: testSubject}) {
				t.Fatalf("signer %+v", res.Signer)
			}
			if res.ModelRoot != "" || res.Resources != nil {
				t.Fatalf("unexpected model root %q", res.ModelRoot)
			}
			if len(res.Timestamps) == 0 {
				t.Fatal("no verified timestamps")
			}
		})
	}
}

func TestKeylessIdentity(t *testing.T) {
	vs := newVS(t)
	bundle := attest(t, vs, statementJSON(t, "p", nil, subject("a", sum("a"))))
	v := keylessVerifier(t, vs, Options{})

	_, err := v.Verify(bundle, []Identity{{Issuer: testIssuer, Subject: "bob@example.com"}})
	wantErr(t, err, "sigstore: signer https://accounts.example.com/alice@example.com is not an allowed identity", "bob@example.com")

	_, err = v.Verify(bundle, []Identity{{Issuer: "https://other.example.com", Subject: testSubject}})
	wantErr(t, err, "signer https://accounts.example.com/alice@example.com is not an allowed identity", "https://other.example.com")

	_, err = v.Verify(bundle, nil)
	wantErr(t, err, "no allowed signer identities")

	// Regexps are anchored: a prefix match is not enough.
	_, err = v.Verify(bundle, []Identity{{IssuerRegexp: `https://accounts\.example\.com`, SubjectRegexp: `alice`}})
	wantErr(t, err, "not an allowed identity")

	_, err = v.Verify(bundle, []Identity{{IssuerRegexp: `(`, SubjectRegexp: `.*`}})
	wantErr(t, err, "issuer regexp")

	for _, ids := range [][]Identity{
		{{IssuerRegexp: `https://accounts\.example\.(com|org)`, SubjectRegexp: `.*@example\.com`}},
		{{Issuer: testIssuer, SubjectRegexp: `alice@.*`}},
		{{Issuer: testIssuer, Subject: "bob@example.com"}, {Issuer: testIssuer, Subject: testSubject}},
	} {
		if _, err := v.Verify(bundle, ids); err != nil {
			t.Fatalf("%v: %v", ids, err)
		}
	}
}

func TestKeylessTampered(t *testing.T) {
	vs := newVS(t)
	stmt := statementJSON(t, "p", nil, subject("a", sum("a")))
	bundle := attest(t, vs, stmt)
	v := keylessVerifier(t, vs, Options{})

	// Swap the payload for another statement, keeping signature and evidence.
	other := statementJSON(t, "p", nil, subject("a", sum("b")))
	var m map[string]any
	if err := json.Unmarshal(bundle, &m); err != nil {
		t.Fatal(err)
	}
	m["dsseEnvelope"].(map[string]any)["payload"] = mustB64(other)
	tampered, _ := json.Marshal(m)
	_, err := v.Verify(tampered, alice)
	if err == nil {
		t.Fatal("tampered payload verified")
	}
	// The Rekor dsse entry binds the payload hash, so tlog verification may trip
	// first; either way the error names the failed check.
	if !strings.Contains(err.Error(), "sigstore: bundle signature:") && !strings.Contains(err.Error(), "sigstore: transparency log:") {
		t.Fatalf("error %q does not name the signature or log check", err)
	}

	// Without a tlog entry (TSA only), the signature check itself must catch it.
	delete(m["verificationMaterial"].(map[string]any), "tlogEntries")
	noTlog, _ := json.Marshal(m)
	_, err = v.Verify(noTlog, alice)
	wantErr(t, err, "sigstore: bundle signature:")

	// A bundle from another Sigstore: its log is unknown here.
	_, err = keylessVerifier(t, newVS(t), Options{}).Verify(bundle, alice)
	wantErr(t, err, "sigstore: transparency log:", "entries from logs the trusted root does not list")
	// Without its log entry, its certificate chain does not verify either.
	_, err = keylessVerifier(t, newVS(t), Options{}).Verify(noTlog, alice)
	if err == nil {
		t.Fatal("bundle from a foreign Sigstore verified")
	}
	t.Log(err)
}

func TestRequireOptions(t *testing.T) {
	vs := newVS(t)
	bundle := attest(t, vs, statementJSON(t, "p", nil, subject("a", sum("a"))))
	var m map[string]any
	_ = json.Unmarshal(bundle, &m)
	vm := m["verificationMaterial"].(map[string]any)
	tlogs := vm["tlogEntries"]
	delete(vm, "tlogEntries")
	noTlog, _ := json.Marshal(m)
	vm["tlogEntries"] = tlogs
	delete(vm, "timestampVerificationData")
	noTSA, _ := json.Marshal(m)
	delete(vm, "tlogEntries")
	none, _ := json.Marshal(m)

	def := keylessVerifier(t, vs, Options{})
	for name, b := range map[string][]byte{"no-tlog": noTlog, "no-tsa": noTSA} {
		if _, err := def.Verify(b, alice); err != nil {
			t.Fatalf("default, %s: %v", name, err)
		}
	}
	_, err := def.Verify(none, alice)
	wantErr(t, err, "sigstore: timestamps:")

	_, err = keylessVerifier(t, vs, Options{RequireTlog: true}).Verify(noTlog, alice)
	wantErr(t, err, "sigstore: transparency log:")
	_, err = keylessVerifier(t, vs, Options{RequireTimestamp: true}).Verify(noTSA, alice)
	wantErr(t, err, "sigstore: timestamps:")

	// SCTs are required when the trusted root lists CT logs.
	v, err := NewVerifier(trustedRootJSON(t, vs, true), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(bundle, alice)
	wantErr(t, err, "sigstore: certificate transparency:")
}

func modelStatement(t testing.TB, root string, files ...string) []byte {
	var res []map[string]string
	for i, f := range files {
		res = append(res, map[string]string{"name": "file" + string(rune('a'+i)), "algorithm": "sha256", "digest": f})
	}
	return statementJSON(t, ModelSigningPredicateType, map[string]any{
		"serialization": map[string]any{"method": "files", "hash_type": "sha256", "allow_symlinks": false},
		"resources":     res,
	}, subject("model", root))
}

func modelRoot(files ...string) string {
	h := sha256.New()
	for _, f := range files {
		b, _ := hex.DecodeString(f)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestModelSigning(t *testing.T) {
	vs := newVS(t)
	v := keylessVerifier(t, vs, Options{})
	f1, f2 := sum("config.json"), sum("weights")
	root := modelRoot(f1, f2)

	res, err := v.Verify(attest(t, vs, modelStatement(t, root, f1, f2)), alice)
	if err != nil {
		t.Fatal(err)
	}
	if res.ModelRoot != root || res.Subjects[root] != "model" || res.PredicateType != ModelSigningPredicateType {
		t.Fatalf("result %+v", res)
	}
	if len(res.Resources) != 2 || res.Resources[1] != (Resource{Name: "fileb", Algorithm: "sha256", Digest: f2}) {
		t.Fatalf("resources %+v", res.Resources)
	}

	// Listed order matters.
	_, err = v.Verify(attest(t, vs, modelStatement(t, root, f2, f1)), alice)
	wantErr(t, err, "sigstore: model-signing root "+modelRoot(f2, f1)+" differs from subject digest "+root)

	_, err = v.Verify(attest(t, vs, modelStatement(t, root, f1)), alice)
	wantErr(t, err, "differs from subject digest")

	_, err = v.Verify(attest(t, vs, modelStatement(t, root, f1, "XYZ")), alice)
	wantErr(t, err, "not 64 lowercase hex")

	two := statementJSON(t, ModelSigningPredicateType, map[string]any{"resources": []any{}}, subject("a", root), subject("b", f1))
	_, err = v.Verify(attest(t, vs, two), alice)
	wantErr(t, err, "2 subjects, want 1")
}

func TestMessageSignature(t *testing.T) {
	vs := newVS(t)
	artifact := []byte("a model file")
	e, err := vs.Sign(testSubject, testIssuer, artifact)
	if err != nil {
		t.Fatal(err)
	}
	bundle := entityBundle(t, vs, e)
	res, err := keylessVerifier(t, vs, Options{RequireTlog: true}).Verify(bundle, alice)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(artifact)
	if name, ok := res.Subjects[hex.EncodeToString(d[:])]; !ok || name != "" || len(res.Subjects) != 1 {
		t.Fatalf("subjects %v", res.Subjects)
	}

	// Claiming another digest breaks the signature (and the log entry).
	other := sha256.Sum256([]byte("another file"))
	tampered := bytes.Replace(bundle, []byte(mustB64(d[:])), []byte(mustB64(other[:])), 1)
	if bytes.Equal(tampered, bundle) {
		t.Fatal("digest not found in bundle")
	}
	if _, err := keylessVerifier(t, vs, Options{}).Verify(tampered, alice); err == nil {
		t.Fatal("tampered message digest verified")
	}
}

// keyPair signs bundles with a plain ECDSA P-256 key, as cosign/model_signing do
// for key-based signing: a v0.3 bundle whose verification material is a public-key hint.
type keyPair struct{ priv *ecdsa.PrivateKey }

func newKeyPair(t testing.TB) keyPair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{k}
}

func (k keyPair) pem(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func (k keyPair) sign(t testing.TB, msg []byte) []byte {
	t.Helper()
	d := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func (k keyPair) bundle(t testing.TB, dsse bool, data []byte) []byte {
	t.Helper()
	b := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "test-key"}},
		},
	}
	if dsse {
		const pt = "application/vnd.in-toto+json"
		pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(pt), pt, len(data), data)
		b.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: data, PayloadType: pt,
			Signatures: []*protodsse.Signature{{Sig: k.sign(t, []byte(pae))}},
		}}
	} else {
		d := sha256.Sum256(data)
		b.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: d[:]},
			Signature:     k.sign(t, data),
		}}
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keyVerifier(t testing.TB, k keyPair) *Verifier {
	t.Helper()
	v, err := NewKeyVerifier(k.pem(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestKeyBased(t *testing.T) {
	kp, other := newKeyPair(t), newKeyPair(t)
	a := sum("a")
	dsse := kp.bundle(t, true, statementJSON(t, "p", nil, subject("a", a)))
	msg := kp.bundle(t, false, []byte("artifact"))

	v := keyVerifier(t, kp)
	res, err := v.Verify(dsse, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Subjects[a] != "a" || res.Signer != (Identity{}) {
		t.Fatalf("result %+v", res)
	}
	res, err = v.Verify(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Subjects[sum("artifact")]; !ok {
		t.Fatalf("subjects %v", res.Subjects)
	}

	w := keyVerifier(t, other)
	_, err = w.Verify(dsse, nil)
	wantErr(t, err, "sigstore: bundle signature:")
	_, err = w.Verify(msg, nil)
	wantErr(t, err, "sigstore: bundle signature:")

	// A keyless verifier refuses key-signed bundles, a key verifier certificate bundles.
	vs := newVS(t)
	_, err = keylessVerifier(t, vs, Options{}).Verify(dsse, alice)
	if err == nil {
		t.Fatal("keyless verifier accepted a key-signed bundle")
	}
	_, err = v.Verify(attest(t, vs, statementJSON(t, "p", nil, subject("a", a))), nil)
	if err == nil {
		t.Fatal("key verifier accepted a certificate bundle")
	}

	if _, err := NewKeyVerifier([]byte("not pem"), Options{}); err == nil {
		t.Fatal("bad PEM accepted")
	}
}

func TestMalformed(t *testing.T) {
	vs := newVS(t)
	v := keylessVerifier(t, vs, Options{})
	_, err := v.Verify(bytes.Repeat([]byte(" "), MaxBundleSize+1), alice)
	wantErr(t, err, "more than the 1048576 allowed")
	for _, in := range []string{"", "{}", "null", `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`, "[", `{"mediaType":1}`} {
		if _, err := v.Verify([]byte(in), alice); err == nil {
			t.Fatalf("%q verified", in)
		}
	}
	if _, err := NewVerifier([]byte("{}"), Options{}); err == nil {
		t.Fatal("empty trusted root accepted")
	}
}

func mustB64(b []byte) string {
	out, _ := json.Marshal(b) // base64 std, quoted
	return strings.Trim(string(out), `"`)
}

func BenchmarkVerifyKeyless(b *testing.B) {
	vs := newVS(b)
	v := keylessVerifier(b, vs, Options{})
	f1, f2 := sum("config.json"), sum("weights")
	bundle := attest(b, vs, modelStatement(b, modelRoot(f1, f2), f1, f2))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(bundle, alice); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyKey(b *testing.B) {
	kp := newKeyPair(b)
	v := keyVerifier(b, kp)
	bundle := kp.bundle(b, true, statementJSON(b, "p", nil, subject("a", sum("a"))))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(bundle, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestConcurrentVerify(t *testing.T) {
	vs := newVS(t)
	v := keylessVerifier(t, vs, Options{})
	bundle := attest(t, vs, statementJSON(t, "p", nil, subject("a", sum("a"))))
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := v.Verify(bundle, alice)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkVerifyKeylessParallel(b *testing.B) {
	vs := newVS(b)
	v := keylessVerifier(b, vs, Options{})
	f1, f2 := sum("config.json"), sum("weights")
	bundle := attest(b, vs, modelStatement(b, modelRoot(f1, f2), f1, f2))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(bundle, alice); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
