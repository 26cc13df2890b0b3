package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/lanyardhq/lanyard/internal/attest/tpm"
	"github.com/lanyardhq/lanyard/internal/attest/tpm/swtpmtest"
)

// tpmBackend is a TPM the attestation tests run against.
type tpmBackend struct {
	name string
	open func(t *testing.T) transport.TPM
}

// tpmBackends are swtpm (a fresh one per call, over its socket as `--tpm <socket>`
// reaches it) and the in-process simulator of go-tpm (one per process, so shared).
func tpmBackends() []tpmBackend {
	return []tpmBackend{
		{"swtpm", func(t *testing.T) transport.TPM {
			c := swtpmtest.Start(t, swtpmtest.Options{}).Open(t)
			t.Cleanup(func() { c.Close() })
			return c
		}},
		{"simulator", func(t *testing.T) transport.TPM {
			sim, err := simulator.OpenSimulator()
			if err != nil {
				t.Fatalf("open TPM simulator: %v", err)
			}
			t.Cleanup(func() { sim.Close() })
			return sim
		}},
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// startEnrolment posts the attester's EK (and certificate, with cert) and AK.
func (e *env) startEnrolment(t *testing.T, at *tpm.Attester, akPublic []byte, cert bool) response {
	t.Helper()
	ek, err := at.EKPublic()
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"ek_public": b64(ek), "ak_public": b64(akPublic)}
	if cert {
		c, err := at.EKCertificate()
		if err != nil || len(c) == 0 {
			t.Fatalf("EK certificate: %d bytes, %v", len(c), err)
		}
		body["ek_certificate"] = b64(c)
	}
	return e.api(http.MethodPost, "/v1/tpm/enrolments", body)
}

// activate answers a started enrolment with the attester's TPM.
func (e *env) activate(t *testing.T, at *tpm.Attester, started response) response {
	t.Helper()
	m := started.json(t)
	blob, _ := base64.StdEncoding.DecodeString(m["credential_blob"].(string))
	enc, _ := base64.StdEncoding.DecodeString(m["encrypted_secret"].(string))
	secret, err := at.ActivateCredential(blob, enc)
	if err != nil {
		t.Fatalf("activate credential: %v", err)
	}
	return e.api(http.MethodPost, "/v1/tpm/enrolments/"+m["id"].(string)+"/activation", map[string]any{"secret": b64(secret)})
}

// enrol runs the whole enrolment of the attester's AK and requires success.
func (e *env) enrol(t *testing.T, at *tpm.Attester) map[string]any {
	t.Helper()
	r := e.startEnrolment(t, at, at.AKPublic(), false)
	if r.status != http.StatusCreated {
		t.Fatalf("start enrolment: %d %s", r.status, r.body)
	}
	r = e.activate(t, at, r)
	if r.status != http.StatusOK {
		t.Fatalf("activation: %d %s", r.status, r.body)
	}
	return r.json(t)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// softwareSigningKey is a TPM key whose public area fails the AK rules: an unrestricted
// signing key, which could sign bytes that imitate a quote.
func unrestrictedKey(t *testing.T, tp transport.TPM) []byte {
	t.Helper()
	tmpl := tpm.AKTemplate
	tmpl.ObjectAttributes.Restricted = false
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tmpl)}.Execute(tp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tp) })
	return tpm2.Marshal(rsp.OutPublic)
}

func base64StdDecode(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
