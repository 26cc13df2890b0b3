package lifecycle

import (
	"context"
	"encoding/base64"
	"fmt"
)

// AKEnrolments tells whether a TPM attestation key completed enrolment by credential
// activation (attest.Enrolments implements it).
type AKEnrolments interface {
	AKEnrolled(ctx context.Context, akPublic []byte) (bool, error)
}

// checkAKEnrolled refuses a reference whose TPM attestation key has not been enrolled,
// when the service requires enrolment (Options.AKEnrolments set). Without it, nothing
// proves that the registered AK is a TPM-resident key rather than a software key that
// can sign anything that looks like a quote.
func (s *Service) checkAKEnrolled(ctx context.Context, v *validator, field string, r *Reference) error {
	if s.opts.AKEnrolments == nil || r == nil || r.TPM == nil || v.has(field+".tpm.ak_public") {
		return nil
	}
	ak, err := base64.StdEncoding.DecodeString(r.TPM.AKPublic)
	if err != nil {
		return nil // reported by the validator
	}
	ok, err := s.opts.AKEnrolments.AKEnrolled(ctx, ak)
	if err != nil {
		return fmt.Errorf("lifecycle: check AK enrolment: %w", err)
	}
	if !ok {
		v.add(field+".tpm.ak_public", "this attestation key has not completed enrolment: run lanyard tpm enroll on the agent's host first")
	}
	return nil
}

// has reports whether field already has a problem.
func (v *validator) has(field string) bool {
	for _, f := range v.fields {
		if f.Field == field {
			return true
		}
	}
	return false
}
