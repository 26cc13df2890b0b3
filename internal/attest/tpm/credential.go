package tpm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// MakeCredential is the server side of enrolment by credential activation:
// it seals secret to the EK whose TPM2B_PUBLIC is ekPublic and to the Name of
// the AK being enrolled (see [AKName]). Only the TPM holding that EK, with a
// key of that Name loaded, can recover secret with TPM2_ActivateCredential;
// the enrolling agent proves it did by returning secret. credBlob is the
// TPMS_ID_OBJECT and encSecret the encrypted seed, as TPM2_MakeCredential
// returns them (without their TPM2B size headers; tpm2-tools' credential
// file format adds a header of its own).
//
// Trusting ekPublic (by its EK certificate or a registered list) is the
// caller's job: this only binds the AK to it.
func MakeCredential(ekPublic, akName, secret []byte) (credBlob, encSecret []byte, err error) {
	if len(secret) == 0 || len(secret) > 64 {
		return nil, nil, errors.New("tpm: make credential: secret must be 1 to 64 bytes")
	}
	if err := checkName(akName); err != nil {
		return nil, nil, fmt.Errorf("tpm: make credential: %w", err)
	}
	if len(ekPublic) < 2 || int(binary.BigEndian.Uint16(ekPublic)) != len(ekPublic)-2 {
		return nil, nil, errors.New("tpm: make credential: EK public is not a TPM2B_PUBLIC")
	}
	pub, err := unmarshalPublic(ekPublic[2:])
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: make credential: EK public: %w", err)
	}
	if a := pub.ObjectAttributes; !a.Restricted || !a.Decrypt || a.SignEncrypt {
		return nil, nil, errors.New("tpm: make credential: EK is not a restricted decryption key")
	}
	key, err := tpm2.ImportEncapsulationKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: make credential: EK: %w", err)
	}
	credBlob, encSecret, err = tpm2.CreateCredential(rand.Reader, key, akName, secret)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: make credential: %w", err)
	}
	return credBlob, encSecret, nil
}

// checkName accepts a TPM object Name: a supported hash algorithm followed
// by a digest of its size.
func checkName(name []byte) error {
	if len(name) < 2 {
		return errors.New("AK name is too short")
	}
	h, ok := hashFor(tpm2.TPMAlgID(binary.BigEndian.Uint16(name)))
	if !ok || len(name) != 2+h.Size() {
		return errors.New("AK name is not a hash algorithm and digest")
	}
	return nil
}
