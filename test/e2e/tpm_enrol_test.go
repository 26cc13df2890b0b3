package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/lanyardhq/lanyard/internal/attest/tpm"
	"github.com/lanyardhq/lanyard/internal/attest/tpm/swtpmtest"
	"github.com/lanyardhq/lanyard/internal/config"
)

// TestTPMEnrolment enrols an attestation key by credential activation with a fresh
// swtpm: registration refuses the AK until it is enrolled; a wrong secret, a replayed
// answer, an AK that is not a restricted signing key and an AK from another TPM are
// refused, each with its own problem type and an audit event.
func TestTPMEnrolment(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		sw := swtpmtest.Start(t, swtpmtest.Options{})
		conn := sw.Open(t)
		defer conn.Close()
		at, err := tpm.NewAttester(conn)
		if err != nil {
			t.Fatal(err)
		}
		defer at.Close()
		ref := map[string]any{"model_digest": modelDigest, "tpm": map[string]any{"ak_public": b64(at.AKPublic())}}

		// Enrolment is an admin act.
		req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/tpm/enrolments", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		wantProblem(t, e.do(req), http.StatusUnauthorized)
		// Bad encodings are named, field by field.
		r := e.api(http.MethodPost, "/v1/tpm/enrolments", map[string]any{"ek_public": "not base64!", "ak_public": ""})
		if p := wantProblem(t, r, http.StatusBadRequest); !slices.Equal(fieldErrors(p), []string{"ek_public", "ak_public"}) {
			t.Fatalf("bad encodings: %s", r.body)
		}

		// Not enrolled yet: registration names the field and says what to do.
		r = e.api(http.MethodPost, "/v1/agents", map[string]any{"name": "unenrolled", "namespace": "finance", "owner": "o",
			"credential": map[string]any{"type": "client_secret"}, "reference": ref})
		if p := wantProblem(t, r, http.StatusBadRequest); !slices.Contains(fieldErrors(p), "reference.tpm.ak_public") {
			t.Fatalf("unenrolled AK: %s", r.body)
		}

		// An unrestricted signing key is not an AK.
		r = e.startEnrolment(t, at, unrestrictedKey(t, conn), false)
		if p := wantProblem(t, r, http.StatusBadRequest); p["type"] != "urn:lanyard:problem:bad-attestation-key" {
			t.Fatalf("unrestricted AK: %s", r.body)
		}

		// A wrong secret fails, and uses up the enrolment.
		started := e.startEnrolment(t, at, at.AKPublic(), false)
		if started.status != http.StatusCreated {
			t.Fatalf("start: %d %s", started.status, started.body)
		}
		id := started.json(t)["id"].(string)
		r = e.api(http.MethodPost, "/v1/tpm/enrolments/"+id+"/activation", map[string]any{"secret": b64(randomBytes(32))})
		if p := wantProblem(t, r, http.StatusForbidden); p["type"] != "urn:lanyard:problem:credential-activation-failed" {
			t.Fatalf("wrong secret: %s", r.body)
		}
		if r := e.activate(t, at, started); r.status != http.StatusNotFound {
			t.Fatalf("right secret after a wrong one: %d %s, want 404 (single use)", r.status, r.body)
		}

		// The good path, then a replay of the same answer.
		started = e.startEnrolment(t, at, at.AKPublic(), false)
		r = e.activate(t, at, started)
		if r.status != http.StatusOK {
			t.Fatalf("activation: %d %s", r.status, r.body)
		}
		got := r.json(t)
		if got["ek_cert_status"] != "absent" || got["ak_name"] != started.json(t)["ak_name"] || got["ek_public_hash"] == "" {
			t.Fatalf("enrolment = %s", r.body)
		}
		if r := e.activate(t, at, started); r.status != http.StatusNotFound {
			t.Fatalf("replayed activation: %d %s, want 404", r.status, r.body)
		}
		if r := e.api(http.MethodGet, "/v1/tpm/attestation-keys/"+got["ak_name"].(string), nil); r.status != http.StatusOK {
			t.Fatalf("get enrolled AK: %d %s", r.status, r.body)
		}
		var ok, failed []string
		for _, ev := range e.auditEvents(t, "type=tpm.enrolled") {
			if ev.Outcome == "success" {
				ok = append(ok, ev.Data["ak_name"].(string))
			} else {
				failed = append(failed, ev.Data["check"].(string))
			}
		}
		if len(ok) != 1 || !slices.Contains(failed, "bad-attestation-key") || !slices.Contains(failed, "credential-activation-failed") ||
			!slices.Contains(failed, "enrolment-not-found") {
			t.Fatalf("audit: enrolled %v, refused %v", ok, failed)
		}

		// Now the AK registers.
		e.registerJWT(t, "enrolled", map[string]any{"reference": ref})

		// A credential made for this TPM's EK and another TPM's AK: that TPM cannot
		// activate it (it does not hold the EK), and this TPM has no key of that name.
		other := swtpmtest.Start(t, swtpmtest.Options{})
		oconn := other.Open(t)
		defer oconn.Close()
		oat, err := tpm.NewAttester(oconn)
		if err != nil {
			t.Fatal(err)
		}
		defer oat.Close()
		cross := e.startEnrolment(t, at, oat.AKPublic(), false) // at's EK, oat's AK
		if cross.status != http.StatusCreated {
			t.Fatalf("start: %d %s", cross.status, cross.body)
		}
		m := cross.json(t)
		blob, enc := mustB64(t, m["credential_blob"]), mustB64(t, m["encrypted_secret"])
		if _, err := oat.ActivateCredential(blob, enc); err == nil {
			t.Fatal("a TPM without the EK activated the credential")
		}
		if _, err := at.ActivateCredential(blob, enc); err == nil {
			t.Fatal("a TPM without the AK activated the credential")
		}
	})
}

// TestTPMEnrolmentEKCertificate: with LANYARD_TPM_EK_CA_BUNDLE, only a TPM whose EK
// certificate chains to the bundle enrols; a certificate from another CA, a missing
// certificate and a certificate for another EK are refused.
func TestTPMEnrolmentEKCertificate(t *testing.T) {
	trusted := swtpmtest.Start(t, swtpmtest.Options{EKCertificate: true})
	foreign := swtpmtest.Start(t, swtpmtest.Options{EKCertificate: true}) // its own CA
	e := startWith(t, "", func(c *config.Config) { c.TPMEKCABundle = trusted.CACerts })

	open := func(sw *swtpmtest.TPM, ek string) *tpm.Attester {
		conn := sw.Open(t)
		t.Cleanup(func() { conn.Close() })
		at, err := tpm.NewAttester(conn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { at.Close() })
		if err := at.UseEK(ek); err != nil {
			t.Fatal(err)
		}
		return at
	}
	// swtpm_setup certifies the RSA 2048 EK at the standard index (its ECC EK is P-384,
	// certified at a high-range index).
	good := open(trusted, tpm.EKRSA)
	r := e.activate(t, good, e.startEnrolment(t, good, good.AKPublic(), true))
	if r.status != http.StatusOK || r.json(t)["ek_cert_status"] != "verified" {
		t.Fatalf("trusted EK certificate: %d %s", r.status, r.body)
	}

	bad := open(foreign, tpm.EKRSA)
	r = e.startEnrolment(t, bad, bad.AKPublic(), true)
	if p := wantProblem(t, r, http.StatusForbidden); p["type"] != "urn:lanyard:problem:ek-certificate-refused" {
		t.Fatalf("foreign CA: %s", r.body)
	}
	r = e.startEnrolment(t, bad, bad.AKPublic(), false)
	if p := wantProblem(t, r, http.StatusForbidden); p["type"] != "urn:lanyard:problem:ek-certificate-refused" {
		t.Fatalf("no certificate: %s", r.body)
	}
	// The trusted TPM's certificate presented with the foreign TPM's EK.
	goodCert, err := good.EKCertificate()
	if err != nil {
		t.Fatal(err)
	}
	badEK, err := bad.EKPublic()
	if err != nil {
		t.Fatal(err)
	}
	r = e.api(http.MethodPost, "/v1/tpm/enrolments", map[string]any{"ek_public": b64(badEK), "ek_certificate": b64(goodCert), "ak_public": b64(bad.AKPublic())})
	if p := wantProblem(t, r, http.StatusForbidden); p["type"] != "urn:lanyard:problem:ek-certificate-refused" {
		t.Fatalf("certificate for another EK: %s", r.body)
	}
}

// TestTPMUnenrolledAKAllowed: LANYARD_TPM_ALLOW_UNENROLLED_AK=true turns the
// registration check off.
func TestTPMUnenrolledAKAllowed(t *testing.T) {
	e := startWith(t, "", func(c *config.Config) { c.TPMAllowUnenrolledAK = "true" })
	sw := swtpmtest.Start(t, swtpmtest.Options{})
	conn := sw.Open(t)
	defer conn.Close()
	at, err := tpm.NewAttester(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer at.Close()
	e.registerJWT(t, "unenrolled", map[string]any{"reference": map[string]any{"tpm": map[string]any{"ak_public": b64(at.AKPublic())}}})
}

func mustB64(t *testing.T, v any) []byte {
	t.Helper()
	s, _ := v.(string)
	b, err := base64StdDecode(s)
	if err != nil {
		t.Fatalf("not base64: %q", s)
	}
	return b
}
