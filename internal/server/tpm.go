package server

import (
	"log/slog"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// tpmEnrolments builds the AK enrolment service and what registration checks against:
// the service itself unless LANYARD_TPM_ALLOW_UNENROLLED_AK is true.
func tpmEnrolments(cfg config.Config, st store.Store, aud attest.Auditor, log *slog.Logger) (*attest.Enrolments, lifecycle.AKEnrolments, error) {
	var opts attest.EnrolmentOptions
	if cfg.TPMEKCABundle != "" {
		pool, n, err := attest.LoadEKRoots(cfg.TPMEKCABundle)
		if err != nil {
			return nil, nil, err
		}
		opts.EKRoots = pool
		log.Info("TPM enrolment requires EK certificates", "ca_bundle", cfg.TPMEKCABundle, "certificates", n)
	}
	enrol := attest.NewEnrolments(st, aud, opts)
	allow, err := cfg.AllowUnenrolledAK()
	if err != nil {
		return nil, nil, err
	}
	if allow {
		log.Warn("TPM attestation keys are accepted without enrolment (LANYARD_TPM_ALLOW_UNENROLLED_AK=true)")
		return enrol, nil, nil
	}
	return enrol, enrol, nil
}
