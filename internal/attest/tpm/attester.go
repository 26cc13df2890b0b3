package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// AKTemplate is the attestation key template: tpm2_createak's default ECC
// key, a restricted ECDSA-P256/SHA-256 signing key that never leaves the
// TPM. Created as a primary under the endorsement hierarchy, it is derived
// from the endorsement seed, so every NewAttester on the same TPM gets the
// same AK (and Name) back without storing anything.
var AKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		Restricted:          true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// Attester produces quotes and answers enrolment challenges with one TPM.
// It is not safe for concurrent use (nor is a TPM transport).
type Attester struct {
	tpm      transport.TPM
	ak       tpm2.NamedHandle
	akPublic []byte // TPM2B_PUBLIC

	ekTemplate tpm2.TPMTPublic
	ek         *tpm2.NamedHandle
	ekPublic   []byte
}

// NewAttester creates (or, the key being derived from the endorsement seed,
// re-creates) the AK from [AKTemplate] in t. Close flushes it; t stays open.
func NewAttester(t transport.TPM) (*Attester, error) {
	return newAttester(t, AKTemplate)
}

func newAttester(t transport.TPM, template tpm2.TPMTPublic) (*Attester, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(template),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: create AK: %w", err)
	}
	return &Attester{
		tpm:        t,
		ak:         tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		akPublic:   tpm2.Marshal(rsp.OutPublic),
		ekTemplate: tpm2.ECCEKTemplate,
	}, nil
}

// AKPublic returns the AK's TPM2B_PUBLIC, the bytes tpm2_createak -u writes.
func (a *Attester) AKPublic() []byte { return bytes.Clone(a.akPublic) }

// Quote quotes the given sha256-bank PCRs with extraData as qualifying data
// and reads their values, so the result is complete evidence. If a PCR is
// extended between the read and the quote, it retries.
func (a *Attester) Quote(extraData []byte, pcrs []int) (*Evidence, error) {
	if len(pcrs) == 0 {
		return nil, errors.New("tpm: quote: no PCRs selected")
	}
	idx := slices.Clone(pcrs)
	slices.Sort(idx)
	idx = slices.Compact(idx)
	sel := make([]uint, len(idx))
	for i, p := range idx {
		if p < 0 || p > 255 {
			return nil, fmt.Errorf("tpm: quote: PCR %d out of range", p)
		}
		sel[i] = uint(p)
	}
	selection := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(sel...),
	}}}
	for range 3 {
		values, err := a.readPCRs(idx)
		if err != nil {
			return nil, err
		}
		rsp, err := tpm2.Quote{
			SignHandle:     a.ak,
			QualifyingData: tpm2.TPM2BData{Buffer: extraData},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      selection,
		}.Execute(a.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: %w", err)
		}
		quote := rsp.Quoted.Bytes()
		q, err := parseAttest(quote)
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: TPM returned %w", err)
		}
		h := sha256.New()
		for _, v := range values {
			h.Write(v)
		}
		if !bytes.Equal(h.Sum(nil), q.pcrDigest) {
			continue // a PCR changed between the read and the quote
		}
		bank := make(map[string]string, len(idx))
		for i, p := range idx {
			bank[strconv.Itoa(p)] = hex.EncodeToString(values[i])
		}
		return &Evidence{
			AKPublic:  a.AKPublic(),
			Quote:     quote,
			Signature: tpm2.Marshal(rsp.Signature),
			PCRs:      map[string]map[string]string{"sha256": bank},
		}, nil
	}
	return nil, errors.New("tpm: quote: PCRs kept changing while quoting")
}

// readPCRs reads sha256-bank PCRs in ascending order. TPM2_PCR_Read returns
// at most eight digests per call, so it loops over what is left.
func (a *Attester) readPCRs(idx []int) ([][]byte, error) {
	values := make(map[int][]byte, len(idx))
	for len(values) < len(idx) {
		var want []uint
		for _, p := range idx {
			if _, ok := values[p]; !ok {
				want = append(want, uint(p))
			}
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(want...),
		}}}}.Execute(a.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm: read PCRs: %w", err)
		}
		var got []int
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if s.Hash != tpm2.TPMAlgSHA256 {
				continue
			}
			for i, b := range s.PCRSelect {
				for bit := range 8 {
					if b&(1<<bit) != 0 {
						got = append(got, i*8+bit)
					}
				}
			}
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, errors.New("tpm: read PCRs: the TPM returned none of the requested sha256 PCRs")
		}
		for i, p := range got {
			values[p] = rsp.PCRValues.Digests[i].Buffer
		}
	}
	out := make([][]byte, len(idx))
	for i, p := range idx {
		out[i] = values[p]
	}
	return out, nil
}

// EKPublic returns the TPM2B_PUBLIC of the endorsement key created from the
// TCG default ECC P-256 EK template (on a provisioned TPM, the key its EK
// certificate is for). Server side, pass it to [MakeCredential].
func (a *Attester) EKPublic() ([]byte, error) {
	if err := a.loadEK(); err != nil {
		return nil, err
	}
	return bytes.Clone(a.ekPublic), nil
}

func (a *Attester) loadEK() error {
	if a.ek != nil {
		return nil
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(a.ekTemplate),
	}.Execute(a.tpm)
	if err != nil {
		return fmt.Errorf("tpm: create EK: %w", err)
	}
	a.ek = &tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	a.ekPublic = tpm2.Marshal(rsp.OutPublic)
	return nil
}

// ActivateCredential recovers the secret [MakeCredential] sealed to this
// TPM's EK and AK Name. The TPM only releases it if the credential names a
// key loaded in the same TPM as the EK, which is what enrolment proves.
func (a *Attester) ActivateCredential(credBlob, encSecret []byte) ([]byte, error) {
	if err := a.loadEK(); err != nil {
		return nil, err
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: a.ak.Handle, Name: a.ak.Name, Auth: tpm2.PasswordAuth(nil)},
		KeyHandle: tpm2.AuthHandle{
			Handle: a.ek.Handle,
			Name:   a.ek.Name,
			// The default EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT).
			Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, s tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
				_, err := tpm2.PolicySecret{AuthHandle: tpm2.TPMRHEndorsement, PolicySession: s, NonceTPM: nonceTPM}.Execute(t)
				return err
			}),
		},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: credBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
	}.Execute(a.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm: activate credential: %w", err)
	}
	return rsp.CertInfo.Buffer, nil
}

// Close flushes the keys this Attester loaded. It does not close the TPM.
func (a *Attester) Close() error {
	var errs []error
	if a.ek != nil {
		if _, err := (tpm2.FlushContext{FlushHandle: a.ek.Handle}).Execute(a.tpm); err != nil {
			errs = append(errs, fmt.Errorf("tpm: flush EK: %w", err))
		}
		a.ek = nil
	}
	if a.ak.Handle != 0 {
		if _, err := (tpm2.FlushContext{FlushHandle: a.ak.Handle}).Execute(a.tpm); err != nil {
			errs = append(errs, fmt.Errorf("tpm: flush AK: %w", err))
		}
		a.ak.Handle = 0
	}
	return errors.Join(errs...)
}
