package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// akKey is a parsed attestation key public area.
type akKey struct {
	area []byte // TPMT_PUBLIC bytes, exactly as sent
	name []byte // nameAlg || H_nameAlg(area)
	pub  *tpm2.TPMTPublic
}

// parseAKPublic parses a TPM2B_PUBLIC. The Name is computed over the bytes
// as sent, not a re-marshalling, so it is the Name the TPM computed.
func parseAKPublic(b []byte) (k *akKey, err error) {
	if len(b) < 2 {
		return nil, errors.New("AK public: truncated")
	}
	size := int(binary.BigEndian.Uint16(b))
	if size != len(b)-2 {
		return nil, fmt.Errorf("AK public: TPM2B_PUBLIC size %d but %d bytes follow", size, len(b)-2)
	}
	area := b[2:]
	if len(area) < 4 {
		return nil, errors.New("AK public: truncated")
	}
	nameAlg := tpm2.TPMAlgID(binary.BigEndian.Uint16(area[2:4]))
	h, ok := hashFor(nameAlg)
	if !ok {
		return nil, fmt.Errorf("AK public: unsupported name algorithm %#04x", uint16(nameAlg))
	}
	pub, err := unmarshalPublic(area)
	if err != nil {
		return nil, fmt.Errorf("AK public: %w", err)
	}
	hh := h.New()
	hh.Write(area)
	name := binary.BigEndian.AppendUint16(nil, uint16(nameAlg))
	return &akKey{area: area, name: hh.Sum(name), pub: pub}, nil
}

// unmarshalPublic wraps go-tpm's reflection unmarshaller: it is not written
// for hostile input, so a panic becomes an error, and bytes it would silently
// ignore (it does not report trailing data) are caught by re-marshalling.
func unmarshalPublic(area []byte) (pub *tpm2.TPMTPublic, err error) {
	defer func() {
		if r := recover(); r != nil {
			pub, err = nil, fmt.Errorf("malformed TPMT_PUBLIC (%v)", r)
		}
	}()
	pub, err = tpm2.Unmarshal[tpm2.TPMTPublic](area)
	if err != nil {
		return nil, fmt.Errorf("malformed TPMT_PUBLIC: %w", err)
	}
	if got := tpm2.Marshal(pub); len(got) != len(area) {
		return nil, fmt.Errorf("malformed TPMT_PUBLIC: %d trailing bytes", len(area)-len(got))
	}
	return pub, nil
}

// AKName returns the TPM Name of the key whose TPM2B_PUBLIC is akPublic:
// its name algorithm (two bytes) followed by that algorithm's digest of the
// public area. It is the Name TPM2_MakeCredential binds a credential to.
func AKName(akPublic []byte) ([]byte, error) {
	k, err := parseAKPublic(akPublic)
	if err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	return k.name, nil
}

// checkAttestationKey refuses keys that could sign something other than
// TPM-generated attestation structures: only a restricted signing key that
// never leaves its TPM makes a quote mean anything.
func (k *akKey) checkAttestationKey() error {
	a := k.pub.ObjectAttributes
	switch {
	case !a.SignEncrypt:
		return errors.New("AK is not a signing key")
	case !a.Restricted:
		return errors.New("AK is not restricted (it could sign data that imitates a quote)")
	case !a.FixedTPM:
		return errors.New("AK is not fixedTPM (it could have been duplicated out of the TPM)")
	case a.Decrypt:
		return errors.New("AK is also a decryption key")
	}
	return nil
}

// publicKey returns the AK as a Go key: ECDSA P-256 or RSA of at least 2048
// bits, validated so that verification cannot trip on a bogus key.
func (k *akKey) publicKey() (crypto.PublicKey, error) {
	switch k.pub.Type {
	case tpm2.TPMAlgECC:
		parms, err := k.pub.Parameters.ECCDetail()
		if err != nil {
			return nil, fmt.Errorf("AK ECC parameters: %w", err)
		}
		if parms.CurveID != tpm2.TPMECCNistP256 {
			return nil, fmt.Errorf("AK curve %#04x is not NIST P-256", uint16(parms.CurveID))
		}
		pt, err := k.pub.Unique.ECC()
		if err != nil {
			return nil, fmt.Errorf("AK ECC point: %w", err)
		}
		x, y := pt.X.Buffer, pt.Y.Buffer
		if len(x) > 32 || len(y) > 32 {
			return nil, errors.New("AK ECC point is not a P-256 point")
		}
		key := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if _, err := key.ECDH(); err != nil { // on-curve check
			return nil, fmt.Errorf("AK ECC point: %w", err)
		}
		return key, nil
	case tpm2.TPMAlgRSA:
		parms, err := k.pub.Parameters.RSADetail()
		if err != nil {
			return nil, fmt.Errorf("AK RSA parameters: %w", err)
		}
		n, err := k.pub.Unique.RSA()
		if err != nil {
			return nil, fmt.Errorf("AK RSA modulus: %w", err)
		}
		key := &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: int(parms.Exponent)}
		if key.E == 0 {
			key.E = 65537 // the TPM's encoding of the default exponent
		}
		if bits := key.N.BitLen(); bits < 2048 || bits > 8192 || key.N.Bit(0) == 0 {
			return nil, fmt.Errorf("AK RSA modulus of %d bits is not acceptable", bits)
		}
		if key.E < 3 || key.E&1 == 0 {
			return nil, fmt.Errorf("AK RSA exponent %d is not acceptable", key.E)
		}
		return key, nil
	}
	return nil, fmt.Errorf("AK type %#04x is neither ECC nor RSA", uint16(k.pub.Type))
}
