package e2e

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gowebpki/jcs"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/attest/tpm"
)

// TestAttestationTPM attests with real quotes from swtpm (over its socket) and from the
// in-process simulator: the quote binds the server's nonce and the measurements, the AK
// is the enrolled one, and PCR 16 has its registered value. A quote replayed with a new
// nonce is refused.
func TestAttestationTPM(t *testing.T) {
	for _, b := range tpmBackends() {
		t.Run(b.name, func(t *testing.T) { testAttestationTPM(t, b) })
	}
}

func testAttestationTPM(t *testing.T, b tpmBackend) {
	forEachStore(t, func(t *testing.T, e *env) {
		tp := b.open(t)
		at, err := tpm.NewAttester(tp)
		if err != nil {
			t.Fatal(err)
		}
		defer at.Close()
		probe, err := at.Quote(make([]byte, 32), []int{16})
		if err != nil {
			t.Fatal(err)
		}
		e.enrol(t, at)
		ref := map[string]any{"model_digest": modelDigest, "tpm": map[string]any{
			"ak_public": base64.StdEncoding.EncodeToString(at.AKPublic()),
			"pcrs":      map[string]any{"sha256": map[string]string{"16": probe.PCRs["sha256"]["16"]}},
		}}
		a := e.registerJWT(t, "tpm-agent", map[string]any{"reference": ref})
		m := map[string]string{"model_digest": modelDigest}

		evidence := func(nonce string) map[string]any {
			nb, _ := base64.RawURLEncoding.DecodeString(nonce)
			raw, _ := json.Marshal(m)
			canon, _ := jcs.Transform(raw)
			q, err := at.Quote(attest.QualifyingData(nb, canon), []int{16})
			if err != nil {
				t.Fatal(err)
			}
			return map[string]any{"ak_public": base64.StdEncoding.EncodeToString(q.AKPublic), "quote": base64.StdEncoding.EncodeToString(q.Quote),
				"signature": base64.StdEncoding.EncodeToString(q.Signature), "pcrs": q.PCRs}
		}
		nonce := e.challenge(t, a)
		body := e.attestBody(t, a, nonce, m)
		ev := evidence(nonce)
		body["tpm"] = ev
		v := e.attest(t, body)
		if v.Status != "affirming" || len(v.failed()) != 0 {
			t.Fatalf("verdict %+v", v)
		}
		outcome := func(v verdict) map[string]string {
			m := map[string]string{}
			for _, c := range v.Checks {
				m[c.Name] = c.Outcome
			}
			return m
		}
		got := outcome(v)
		for _, want := range []string{"nonce", "measurements.model", "tpm.ak", "tpm.signature", "tpm.nonce", "tpm.pcr_digest", "tpm.pcrs"} {
			if got[want] != "pass" {
				t.Errorf("check %s = %q, want pass: %+v", want, got[want], v.Checks)
			}
		}
		if got["tpm.clock"] != "skipped" {
			t.Errorf("first quote of the AK: tpm.clock = %q, want skipped", got["tpm.clock"])
		}
		// The second quote's counters are compared with the first's. The simulator's
		// clock counts milliseconds and two quotes in one millisecond carry equal
		// counters, which the verifier rightly refuses as a replay: let it tick.
		time.Sleep(5 * time.Millisecond)
		nonce = e.challenge(t, a)
		body = e.attestBody(t, a, nonce, m)
		body["tpm"] = evidence(nonce)
		if v2 := e.attest(t, body); v2.Status != "affirming" || outcome(v2)["tpm.clock"] != "pass" {
			t.Fatalf("second quote: %+v", v2)
		}
		tok := e.tokenJWT(t, a, nil).json(t)
		if att, _ := jwtClaims(t, tok["access_token"].(string))["att"].(map[string]any); att["host"] != "tpm" {
			t.Fatalf("att = %v", att)
		}

		// The same quote with a fresh nonce: the quote does not carry that nonce.
		body = e.attestBody(t, a, e.challenge(t, a), m)
		body["tpm"] = ev
		if f := e.attest(t, body).failed(); f["tpm.nonce"] == "" {
			t.Fatalf("replayed quote: failed %v, want tpm.nonce", f)
		}
		// A quote over other measurements than those sent fails the binding too.
		nonce = e.challenge(t, a)
		body = e.attestBody(t, a, nonce, map[string]string{"model_digest": modelDigest})
		q := evidence(nonce)
		body["measurements"] = map[string]string{"model_digest": strings.Replace(modelDigest, "1a", "1b", 1)}
		body["tpm"] = q
		f := e.attest(t, body).failed()
		if f["tpm.nonce"] == "" || f["measurements.model"] == "" {
			t.Fatalf("swapped measurements: failed %v, want tpm.nonce and measurements.model", f)
		}
	})
}
