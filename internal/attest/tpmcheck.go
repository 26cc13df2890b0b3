package attest

import (
	"encoding/base64"

	"github.com/lanyardhq/lanyard/internal/attest/tpm"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// TPMQuotes verifies TPM quotes with package tpm. It is the server's TPMVerifier.
type TPMQuotes struct{}

var _ TPMVerifier = TPMQuotes{}

// VerifyTPM decodes the evidence, runs every quote check and converts the outcome.
func (TPMQuotes) VerifyTPM(ev *TPMEvidence, ref *lifecycle.TPMReference, extraData []byte, prev *store.TPMCounters) ([]Check, *store.TPMCounters) {
	var decodeFail []Check
	decode := func(name, s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			decodeFail = append(decodeFail, Check{Name: "tpm.evidence", Outcome: Fail, Detail: name + " is not standard base64"})
		}
		return b
	}
	e := tpm.Evidence{AKPublic: decode("tpm.ak_public", ev.AKPublic), Quote: decode("tpm.quote", ev.Quote),
		Signature: decode("tpm.signature", ev.Signature), PCRs: ev.PCRs}
	refAK, err := base64.StdEncoding.DecodeString(ref.AKPublic)
	if err != nil {
		return []Check{{Name: "tpm.ak", Outcome: Fail, Detail: "the registered ak_public is not standard base64"}}, nil
	}
	if len(decodeFail) > 0 {
		return decodeFail, nil
	}
	var p *tpm.Counters
	if prev != nil {
		p = &tpm.Counters{Clock: uint64(prev.Clock), ResetCount: uint32(prev.ResetCount), RestartCount: uint32(prev.RestartCount)}
	}
	tc, cur, ok := tpm.VerifyQuote(e, tpm.Policy{AKPublic: refAK, PCRs: ref.PCRs}, extraData, p)
	checks := make([]Check, len(tc))
	for i, c := range tc {
		checks[i] = Check{Name: c.Name, Outcome: c.Outcome, Expected: c.Expected, Actual: c.Actual, Detail: c.Detail}
	}
	if !ok || cur == nil {
		return checks, nil
	}
	return checks, &store.TPMCounters{Clock: int64(cur.Clock), ResetCount: int64(cur.ResetCount), RestartCount: int64(cur.RestartCount)}
}
