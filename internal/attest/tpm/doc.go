// Package tpm verifies TPM 2.0 quotes sent as attestation evidence, and holds
// the client side that produces them.
//
// Server side (pure Go, no TPM needed): [VerifyQuote] checks a TPMS_ATTEST
// quote, its TPMT_SIGNATURE and the PCR values an agent sends against the
// attestation key (AK) enrolled for it, the challenge-bound qualifying data
// and the expected PCR values, and returns one named [Check] per property so
// every refusal says exactly what failed. [MakeCredential] builds the
// credential-activation challenge that proves, at enrolment, that an AK lives
// in the same TPM as an endorsement key (EK).
//
// Client side: an [Attester] wraps a TPM (hardware, swtpm or the in-process
// simulator) and creates the AK, quotes PCRs and answers the enrolment
// challenge with TPM2_ActivateCredential.
//
// Wire formats are those tpm2-tools writes: AK public as TPM2B_PUBLIC
// (tpm2_createak -u), quote as the raw TPMS_ATTEST bytes (tpm2_quote -m) and
// signature as TPMT_SIGNATURE (tpm2_quote -s).
package tpm
