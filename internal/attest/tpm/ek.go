package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// NV indices of the EK certificates a TPM manufacturer provisions for the TCG default
// EK templates (TCG EK Credential Profile 2.0, section 2.2.1.4, low range).
const (
	EKCertIndexRSA = 0x01c00002 // RSA 2048 EK certificate (template L-1)
	EKCertIndexECC = 0x01c0000a // ECC NIST P-256 EK certificate (template L-2)
)

// EK kinds: which TCG default template the endorsement key is created from.
const (
	EKECC = "ecc" // ECC NIST P-256 (tpm2.ECCEKTemplate)
	EKRSA = "rsa" // RSA 2048 (tpm2.RSAEKTemplate)
)

// AKTemplateRSA is the RSA attestation key template: tpm2_createak -G rsa -s rsassa,
// a restricted RSASSA-PKCS1-v1_5/SHA-256 2048-bit signing key that never leaves the TPM.
var AKTemplateRSA = tpm2.TPMTPublic{
	Type:             tpm2.TPMAlgRSA,
	NameAlg:          tpm2.TPMAlgSHA256,
	ObjectAttributes: AKTemplate.ObjectAttributes,
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Scheme: tpm2.TPMTRSAScheme{
			Scheme:  tpm2.TPMAlgRSASSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		KeyBits: 2048,
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}),
}

// NewAttesterRSA is [NewAttester] with an RSA AK ([AKTemplateRSA]).
func NewAttesterRSA(t transport.TPM) (*Attester, error) {
	return newAttester(t, AKTemplateRSA)
}

// UseEK chooses the endorsement key template, [EKECC] (the default) or [EKRSA]. Call it
// before the first EKPublic, EKCertificate or ActivateCredential.
func (a *Attester) UseEK(kind string) error {
	if a.ek != nil {
		return errors.New("tpm: the EK is already loaded")
	}
	switch kind {
	case EKECC:
		a.ekTemplate = tpm2.ECCEKTemplate
	case EKRSA:
		a.ekTemplate = tpm2.RSAEKTemplate
	default:
		return fmt.Errorf("tpm: EK kind %q is not %s or %s", kind, EKECC, EKRSA)
	}
	return nil
}

// EKCertificate reads the manufacturer's certificate for the chosen EK template from
// the TPM's NV storage. It returns nil and no error when the TPM has none.
func (a *Attester) EKCertificate() ([]byte, error) {
	idx := uint32(EKCertIndexECC)
	if a.ekTemplate.Type == tpm2.TPMAlgRSA {
		idx = EKCertIndexRSA
	}
	return a.ReadNV(idx)
}

// HasNV reports whether the NV index is defined.
func (a *Attester) HasNV(index uint32) (bool, error) {
	_, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(a.tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tpm: read NV %#x public: %w", index, err)
	}
	return true, nil
}

// ReadNV reads a whole NV index (authorised by the index itself with an empty
// password, as EK certificate indices are), nil when it is not defined.
func (a *Attester) ReadNV(index uint32) ([]byte, error) {
	rp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(a.tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: read NV %#x public: %w", index, err)
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: NV %#x public: %w", index, err)
	}
	h := tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: rp.NVName}
	var out []byte
	// 768 bytes fits every TPM's TPM_PT_NV_BUFFER_MAX (1024 on most).
	for off := 0; off < int(pub.DataSize); {
		n := min(int(pub.DataSize)-off, 768)
		r, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    h, Size: uint16(n), Offset: uint16(off),
		}.Execute(a.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm: read NV %#x: %w", index, err)
		}
		if len(r.Data.Buffer) == 0 {
			return nil, fmt.Errorf("tpm: read NV %#x: the TPM returned no data", index)
		}
		out = append(out, r.Data.Buffer...)
		off += len(r.Data.Buffer)
	}
	// Certificates are DER; an NV area may be padded after it.
	return trimDER(out), nil
}

// trimDER cuts b after its first DER element when b starts with a well-formed
// SEQUENCE header, and returns b unchanged otherwise.
func trimDER(b []byte) []byte {
	if len(b) < 2 || b[0] != 0x30 {
		return b
	}
	n, hdr := int(b[1]), 2
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 3 || len(b) < 2+k {
			return b
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		hdr += k
	}
	if hdr+n > len(b) {
		return b
	}
	return b[:hdr+n]
}

// EKPublicKey parses an endorsement key's TPM2B_PUBLIC and returns its public key. It
// refuses anything but a restricted decryption key (an EK), ECC P-256/P-384 or RSA of
// at least 2048 bits.
func EKPublicKey(ekPublic []byte) (crypto.PublicKey, error) {
	if len(ekPublic) < 2 || int(binary.BigEndian.Uint16(ekPublic)) != len(ekPublic)-2 {
		return nil, errors.New("tpm: EK public is not a TPM2B_PUBLIC")
	}
	pub, err := unmarshalPublic(ekPublic[2:])
	if err != nil {
		return nil, fmt.Errorf("tpm: EK public: %w", err)
	}
	if a := pub.ObjectAttributes; !a.Restricted || !a.Decrypt || a.SignEncrypt || !a.FixedTPM || !a.FixedParent {
		return nil, errors.New("tpm: EK public is not a restricted, fixedTPM decryption key")
	}
	switch pub.Type {
	case tpm2.TPMAlgECC:
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, fmt.Errorf("tpm: EK ECC parameters: %w", err)
		}
		var curve elliptic.Curve
		switch parms.CurveID {
		case tpm2.TPMECCNistP256:
			curve = elliptic.P256()
		case tpm2.TPMECCNistP384:
			curve = elliptic.P384()
		default:
			return nil, fmt.Errorf("tpm: EK curve %#04x is not NIST P-256 or P-384", uint16(parms.CurveID))
		}
		pt, err := pub.Unique.ECC()
		if err != nil {
			return nil, fmt.Errorf("tpm: EK ECC point: %w", err)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(pt.X.Buffer) > size || len(pt.Y.Buffer) > size {
			return nil, errors.New("tpm: EK ECC point is not on its curve")
		}
		k := &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(pt.X.Buffer), Y: new(big.Int).SetBytes(pt.Y.Buffer)}
		if _, err := k.ECDH(); err != nil {
			return nil, fmt.Errorf("tpm: EK ECC point: %w", err)
		}
		return k, nil
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, fmt.Errorf("tpm: EK RSA parameters: %w", err)
		}
		n, err := pub.Unique.RSA()
		if err != nil {
			return nil, fmt.Errorf("tpm: EK RSA modulus: %w", err)
		}
		k := &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: int(parms.Exponent)}
		if k.E == 0 {
			k.E = 65537
		}
		if bits := k.N.BitLen(); bits < 2048 || bits > 8192 || k.N.Bit(0) == 0 || k.E < 3 || k.E&1 == 0 {
			return nil, fmt.Errorf("tpm: EK RSA key of %d bits is not acceptable", bits)
		}
		return k, nil
	}
	return nil, fmt.Errorf("tpm: EK type %#04x is neither ECC nor RSA", uint16(pub.Type))
}

// CheckAKPublic parses an attestation key's TPM2B_PUBLIC and refuses it unless it is
// what enrolment may bind: a restricted signing key (never also a decryption key)
// created in the TPM (sensitiveDataOrigin), bound to it and its parent (fixedTPM,
// fixedParent), usable with its auth value (userWithAuth), with an ECDSA P-256 or RSA
// ≥ 2048 key and a SHA-256 signing scheme. It returns the AK's Name.
func CheckAKPublic(akPublic []byte) (name []byte, err error) {
	k, err := parseAKPublic(akPublic)
	if err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	if err := k.checkAttestationKey(); err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	a := k.pub.ObjectAttributes
	switch {
	case !a.FixedParent:
		return nil, errors.New("tpm: AK is not fixedParent (it could be duplicated under another parent)")
	case !a.SensitiveDataOrigin:
		return nil, errors.New("tpm: AK is not sensitiveDataOrigin (its private key was not generated by the TPM)")
	case !a.UserWithAuth:
		return nil, errors.New("tpm: AK is not userWithAuth")
	}
	if _, err := k.publicKey(); err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	if err := checkSigningScheme(k.pub); err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	return bytes.Clone(k.name), nil
}

// checkSigningScheme requires the key's own scheme to be a SHA-256 signature scheme: a
// restricted key with a null scheme would let the quote caller pick the hash.
func checkSigningScheme(pub *tpm2.TPMTPublic) error {
	var scheme tpm2.TPMAlgID
	var details *tpm2.TPMUAsymScheme
	switch pub.Type {
	case tpm2.TPMAlgECC:
		p, err := pub.Parameters.ECCDetail()
		if err != nil {
			return err
		}
		scheme, details = p.Scheme.Scheme, &p.Scheme.Details
	case tpm2.TPMAlgRSA:
		p, err := pub.Parameters.RSADetail()
		if err != nil {
			return err
		}
		scheme, details = p.Scheme.Scheme, &p.Scheme.Details
	}
	var hash tpm2.TPMIAlgHash
	switch scheme {
	case tpm2.TPMAlgECDSA:
		d, err := details.ECDSA()
		if err != nil {
			return fmt.Errorf("AK scheme: %w", err)
		}
		hash = d.HashAlg
	case tpm2.TPMAlgRSASSA:
		d, err := details.RSASSA()
		if err != nil {
			return fmt.Errorf("AK scheme: %w", err)
		}
		hash = d.HashAlg
	case tpm2.TPMAlgRSAPSS:
		d, err := details.RSAPSS()
		if err != nil {
			return fmt.Errorf("AK scheme: %w", err)
		}
		hash = d.HashAlg
	default:
		return fmt.Errorf("AK signing scheme %#04x is not ECDSA, RSASSA or RSAPSS", uint16(scheme))
	}
	if hash != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("AK signing hash %#04x is not SHA-256", uint16(hash))
	}
	return nil
}
