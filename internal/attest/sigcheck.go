package attest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/lanyardhq/lanyard/internal/attest/sigstore"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
)

// SigstoreBundles verifies bundles with package sigstore. It is the server's
// SigstoreVerifier when a trusted root or a public key is configured.
type SigstoreBundles struct{ Verifier *sigstore.Verifier }

var _ SigstoreVerifier = SigstoreBundles{}

// VerifyBundles verifies each bundle against the agent's allowed signers and returns
// the digests the valid ones prove: in-toto subjects, the signed artifact of a message
// signature, and the recomputed root of an OpenSSF model-signing statement.
func (s SigstoreBundles) VerifyBundles(bundles []json.RawMessage, ids []lifecycle.SigstoreReference) (map[string]bool, []Check) {
	allowed := make([]sigstore.Identity, len(ids))
	for i, id := range ids {
		allowed[i] = sigstore.Identity{Issuer: id.Issuer, Subject: id.Subject, IssuerRegexp: id.IssuerRegexp, SubjectRegexp: id.SubjectRegexp}
	}
	proven := map[string]bool{}
	checks := make([]Check, 0, len(bundles))
	for i, b := range bundles {
		name := fmt.Sprintf("sigstore.bundle[%d]", i)
		res, err := s.Verifier.Verify(b, allowed)
		if err != nil {
			checks = append(checks, Check{Name: name, Outcome: Fail, Detail: err.Error()})
			continue
		}
		var digests []string
		for hex := range res.Subjects {
			digests = append(digests, "sha256:"+hex)
		}
		if res.ModelRoot != "" {
			digests = append(digests, "sha256:"+res.ModelRoot)
		}
		sort.Strings(digests)
		for _, d := range digests {
			proven[d] = true
		}
		checks = append(checks, Check{Name: name, Outcome: Pass, Actual: res.Signer.String(),
			Detail: "proves " + strings.Join(digests, ", ")})
	}
	return proven, checks
}
