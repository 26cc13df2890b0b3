package sigstore

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

func TestClockAndVersions(t *testing.T) {
	vs := newVS(t)
	bundle := attest(t, vs, statementJSON(t, "p", nil, subject("a", sum("a"))))

	// Evidence timestamped after Now+MaxClockSkew is refused.
	past := func() time.Time { return time.Now().Add(-time.Hour) }
	_, err := keylessVerifier(t, vs, Options{Now: past}).Verify(bundle, alice)
	wantErr(t, err, "is in the future")

	// Older bundle media types carry the certificate as a chain.
	var m map[string]any
	if err := json.Unmarshal(bundle, &m); err != nil {
		t.Fatal(err)
	}
	vm := m["verificationMaterial"].(map[string]any)
	cert := vm["certificate"]
	delete(vm, "certificate")
	vm["x509CertificateChain"] = map[string]any{"certificates": []any{cert}}
	v := keylessVerifier(t, vs, Options{})
	for _, mt := range []string{
		"application/vnd.dev.sigstore.bundle+json;version=0.1",
		"application/vnd.dev.sigstore.bundle+json;version=0.2",
	} {
		m["mediaType"] = mt
		b, _ := json.Marshal(m)
		if _, err := v.Verify(b, alice); err != nil {
			t.Fatalf("%s: %v", mt, err)
		}
	}
	m["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.3+json"
	b, _ := json.Marshal(m)
	_, err = v.Verify(b, alice)
	wantErr(t, err, "sigstore: bundle:", "certificate chain")
}

// A trusted root that lists no Rekor log (a TSA-only private deployment) verifies
// bundles by their signed timestamp.
func TestTSAOnlyRoot(t *testing.T) {
	vs := newVS(t)
	bundle := attest(t, vs, statementJSON(t, "p", nil, subject("a", sum("a"))))
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), nil, vs.TimestampingAuthorities(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifierFromMaterial(tr, Options{RequireTlog: true}); err == nil {
		t.Fatal("RequireTlog accepted without Rekor logs")
	}
	v, err := NewVerifierFromMaterial(tr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(bundle, alice); err != nil {
		t.Fatal(err)
	}
	// With the timestamp removed there is nothing left to date the certificate.
	var m map[string]any
	_ = json.Unmarshal(bundle, &m)
	delete(m["verificationMaterial"].(map[string]any), "timestampVerificationData")
	b, _ := json.Marshal(m)
	_, err = v.Verify(b, alice)
	wantErr(t, err, "sigstore: timestamps:")
}

func TestStatementChecks(t *testing.T) {
	vs := newVS(t)
	v := keylessVerifier(t, vs, Options{})
	bad := statementJSON(t, "p", nil, subject("a", "ABC"))
	_, err := v.Verify(attest(t, vs, bad), alice)
	wantErr(t, err, `subject 0 ("a") sha256 digest "ABC"`)

	other, _ := json.Marshal(map[string]any{"_type": "https://example.com/Statement", "subject": []any{}})
	_, err = v.Verify(attest(t, vs, other), alice)
	wantErr(t, err, "in-toto statement type")
}
