package tpm

import (
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The wire parsers here are hand-written rather than go-tpm's reflection
// unmarshaller: they take attacker-controlled bytes, must be total (an error,
// never a panic), must reject trailing bytes, and must let the verifier look
// at the magic and type even when the rest is garbage.

const (
	tpmGeneratedValue = 0xff544347 // TPM_GENERATED_VALUE
	tpmSTAttestQuote  = 0x8018     // TPM_ST_ATTEST_QUOTE

	// maxPCRBanks bounds the selection count before any allocation; real
	// TPMs implement a handful of banks (HASH_COUNT).
	maxPCRBanks = 16
)

// reader is a bounds-checked big-endian cursor over a TPM structure.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errShort
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// tpm2b reads a TPM2B: a 16-bit size and that many bytes.
func (r *reader) tpm2b() []byte { return r.take(int(r.u16())) }

// end fails unless every byte was consumed.
func (r *reader) end(what string) error {
	if r.err != nil {
		return fmt.Errorf("%s: %w", what, r.err)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%s: %d trailing bytes", what, len(r.b))
	}
	return nil
}

// pcrSelection is one TPMS_PCR_SELECTION: a bank and its PCR indices in
// ascending order.
type pcrSelection struct {
	hash tpm2.TPMAlgID
	pcrs []int
}

// attest is the part of a TPMS_ATTEST (of type quote) the verifier uses.
type attest struct {
	magic        uint32
	typ          uint16
	extraData    []byte
	clock        uint64
	resetCount   uint32
	restartCount uint32
	safe         bool
	selection    []pcrSelection
	pcrDigest    []byte
}

// parseAttest parses a TPMS_ATTEST whose attested member is a
// TPMS_QUOTE_INFO. It fills magic and type whenever at least six bytes are
// there, even if it then fails.
func parseAttest(b []byte) (*attest, error) {
	r := &reader{b: b}
	a := &attest{magic: r.u32(), typ: r.u16()}
	if r.err != nil {
		return a, fmt.Errorf("quote header: %w", r.err)
	}
	if a.typ != tpmSTAttestQuote {
		return a, fmt.Errorf("attestation type %#04x is not a quote", a.typ)
	}
	r.tpm2b() // qualifiedSigner: only meaningful with the parent's qualified name
	a.extraData = r.tpm2b()
	a.clock = r.u64()
	a.resetCount = r.u32()
	a.restartCount = r.u32()
	switch r.u8() {
	case 0:
	case 1:
		a.safe = true
	default:
		if r.err == nil {
			return a, errors.New("quote clock info: safe is not a TPMI_YES_NO")
		}
	}
	r.u64() // firmwareVersion
	n := r.u32()
	if r.err == nil && n > maxPCRBanks {
		return a, fmt.Errorf("quote selects %d PCR banks (at most %d)", n, maxPCRBanks)
	}
	seen := map[tpm2.TPMAlgID]bool{}
	for i := uint32(0); i < n && r.err == nil; i++ {
		s := pcrSelection{hash: tpm2.TPMAlgID(r.u16())}
		bits := r.take(int(r.u8()))
		if r.err != nil {
			break
		}
		if seen[s.hash] {
			return a, fmt.Errorf("quote selects bank %s twice", bankName(s.hash))
		}
		seen[s.hash] = true
		for byteIdx, v := range bits {
			for bit := range 8 {
				if v&(1<<bit) != 0 {
					s.pcrs = append(s.pcrs, byteIdx*8+bit)
				}
			}
		}
		a.selection = append(a.selection, s)
	}
	a.pcrDigest = r.tpm2b()
	if err := r.end("quote"); err != nil {
		return a, err
	}
	return a, nil
}

// signature is a parsed TPMT_SIGNATURE.
type signature struct {
	alg  tpm2.TPMAlgID // RSASSA, RSAPSS or ECDSA
	hash tpm2.TPMAlgID
	rsa  []byte // RSA signature
	r, s []byte // ECDSA signature
}

func parseSignature(b []byte) (*signature, error) {
	r := &reader{b: b}
	sig := &signature{alg: tpm2.TPMAlgID(r.u16())}
	switch sig.alg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		sig.hash = tpm2.TPMAlgID(r.u16())
		sig.rsa = r.tpm2b()
	case tpm2.TPMAlgECDSA:
		sig.hash = tpm2.TPMAlgID(r.u16())
		sig.r = r.tpm2b()
		sig.s = r.tpm2b()
	default:
		if r.err == nil {
			return nil, fmt.Errorf("signature algorithm %#04x is not RSASSA, RSAPSS or ECDSA", uint16(sig.alg))
		}
	}
	if err := r.end("signature"); err != nil {
		return nil, err
	}
	return sig, nil
}

// hashFor maps a TPM hash algorithm to Go's; ok is false for anything this
// package does not support.
func hashFor(alg tpm2.TPMAlgID) (crypto.Hash, bool) {
	switch alg {
	case tpm2.TPMAlgSHA1:
		return crypto.SHA1, true
	case tpm2.TPMAlgSHA256:
		return crypto.SHA256, true
	case tpm2.TPMAlgSHA384:
		return crypto.SHA384, true
	case tpm2.TPMAlgSHA512:
		return crypto.SHA512, true
	}
	return 0, false
}

// bankName is the evidence document's name for a PCR bank.
func bankName(alg tpm2.TPMAlgID) string {
	switch alg {
	case tpm2.TPMAlgSHA1:
		return "sha1"
	case tpm2.TPMAlgSHA256:
		return "sha256"
	case tpm2.TPMAlgSHA384:
		return "sha384"
	case tpm2.TPMAlgSHA512:
		return "sha512"
	case tpm2.TPMAlgSM3256:
		return "sm3_256"
	}
	return fmt.Sprintf("alg_%#04x", uint16(alg))
}
