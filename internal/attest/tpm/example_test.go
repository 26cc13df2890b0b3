package tpm_test

import (
	"crypto/sha256"
	"fmt"
	"log"

	"github.com/google/go-tpm/tpm2/transport/simulator"
	"github.com/lanyardhq/lanyard/internal/attest/tpm"
)

// An agent quotes PCR 16 with the challenge-bound qualifying data; the
// server verifies the quote against the AK and PCR values it enrolled.
func ExampleVerifyQuote() {
	tpm.SimMu.Lock() // one simulator per process (a test-only guard)
	defer tpm.SimMu.Unlock()
	t, err := simulator.OpenSimulator() // a real host: linuxtpm.Open("/dev/tpmrm0")
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	a, err := tpm.NewAttester(t)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	// Enrolment registers the AK (after credential activation) and the
	// PCR values the host is expected to have.
	enrolled, err := a.Quote(make([]byte, 32), []int{16})
	if err != nil {
		log.Fatal(err)
	}
	policy := tpm.Policy{AKPublic: a.AKPublic(), PCRs: enrolled.PCRs}

	// Attestation: extraData is SHA-256(nonce || JCS(measurements)).
	extraData := sha256.Sum256([]byte("nonce and measurements"))
	ev, err := a.Quote(extraData[:], []int{16})
	if err != nil {
		log.Fatal(err)
	}
	checks, _, ok := tpm.VerifyQuote(*ev, policy, extraData[:], nil)
	for _, c := range checks {
		fmt.Println(c.Name, c.Outcome)
	}
	fmt.Println("ok:", ok)
	// Output:
	// tpm.ak pass
	// tpm.quote.magic pass
	// tpm.quote.type pass
	// tpm.signature pass
	// tpm.nonce pass
	// tpm.pcr_digest pass
	// tpm.pcrs pass
	// tpm.clock skipped
	// ok: true
}
