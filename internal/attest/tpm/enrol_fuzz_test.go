package tpm

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// enrolmentSeeds are real key publics from the simulator: ECC and RSA AKs and EKs.
func enrolmentSeeds(f *testing.F) [][]byte {
	sim := openSim(f)
	var seeds [][]byte
	for _, tmpl := range []tpm2.TPMTPublic{AKTemplate, AKTemplateRSA, tpm2.ECCEKTemplate, tpm2.RSAEKTemplate} {
		rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tmpl)}.Execute(sim)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, tpm2.Marshal(rsp.OutPublic))
		if _, err := (tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}).Execute(sim); err != nil {
			f.Fatal(err)
		}
	}
	return seeds
}

// FuzzEnrolmentKeys feeds the enrolment decoders (AK and EK TPM2B_PUBLIC, the
// credential made for them) bytes from the network: any input gives a result or an
// error, never a panic, and an accepted AK's Name is the one AKName computes.
func FuzzEnrolmentKeys(f *testing.F) {
	seeds := enrolmentSeeds(f)
	for _, ak := range seeds[:2] {
		for _, ek := range seeds[2:] {
			f.Add(ak, ek)
		}
	}
	f.Add([]byte{}, []byte{0, 0})
	f.Fuzz(func(t *testing.T, akPublic, ekPublic []byte) {
		name, akErr := CheckAKPublic(akPublic)
		if akErr == nil {
			n2, err := AKName(akPublic)
			if err != nil || !bytes.Equal(name, n2) {
				t.Fatalf("CheckAKPublic accepted a key AKName refuses or names differently: %x %x %v", name, n2, err)
			}
		}
		_, ekErr := EKPublicKey(ekPublic)
		if akErr != nil || ekErr != nil {
			return
		}
		blob, enc, err := MakeCredential(ekPublic, name, []byte("0123456789abcdef0123456789abcdef"))
		if err == nil && (len(blob) == 0 || len(enc) == 0) {
			t.Fatal("MakeCredential returned an empty credential")
		}
	})
}

// TestCheckAKPublic changes one property of a real AK's public area at a time (the
// server sees only these bytes, so no TPM needs to accept the template).
func TestCheckAKPublic(t *testing.T) {
	sim := openSim(t)
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(AKTemplate)}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(sim)
	for name, tc := range map[string]struct {
		mod  func(*tpm2.TPMTPublic)
		want bool
	}{
		"ecc AK":              {func(*tpm2.TPMTPublic) {}, true},
		"not restricted":      {func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false }, false},
		"not fixedTPM":        {func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false }, false},
		"not fixedParent":     {func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedParent = false }, false},
		"not sensitiveOrigin": {func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SensitiveDataOrigin = false }, false},
		"not userWithAuth":    {func(p *tpm2.TPMTPublic) { p.ObjectAttributes.UserWithAuth = false }, false},
		"also decrypt":        {func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Decrypt = true }, false},
		"not sign":            {func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SignEncrypt = false }, false},
		"sha384 sign scheme":  {func(p *tpm2.TPMTPublic) { setECDSAHash(p, tpm2.TPMAlgSHA384) }, false},
	} {
		t.Run(name, func(t *testing.T) {
			pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](tpm2.Marshal(rsp.OutPublic)[2:])
			if err != nil {
				t.Fatal(err)
			}
			tc.mod(pub)
			_, err = CheckAKPublic(tpm2.Marshal(tpm2.New2B(*pub)))
			if (err == nil) != tc.want {
				t.Fatalf("CheckAKPublic = %v, want accepted %v", err, tc.want)
			}
		})
	}
}

func setECDSAHash(p *tpm2.TPMTPublic, h tpm2.TPMIAlgHash) {
	p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: h})},
		CurveID: tpm2.TPMECCNistP256,
	})
}

// BenchmarkEnrolmentChallenge is the server's CPU per enrolment start: check the AK,
// parse the EK and seal a secret to it (ECDH P-256 or RSA-OAEP 2048 in MakeCredential).
func BenchmarkEnrolmentChallenge(b *testing.B) {
	sim := openSim(b)
	pub := func(tmpl tpm2.TPMTPublic) []byte {
		rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tmpl)}.Execute(sim)
		if err != nil {
			b.Fatal(err)
		}
		defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(sim)
		return tpm2.Marshal(rsp.OutPublic)
	}
	ak := pub(AKTemplate)
	secret := make([]byte, 32)
	for _, ek := range []struct {
		name string
		tmpl tpm2.TPMTPublic
	}{{"ECC-P256-EK", tpm2.ECCEKTemplate}, {"RSA-2048-EK", tpm2.RSAEKTemplate}} {
		ekPub := pub(ek.tmpl)
		b.Run(ek.name, func(b *testing.B) {
			for b.Loop() {
				name, err := CheckAKPublic(ak)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := EKPublicKey(ekPub); err != nil {
					b.Fatal(err)
				}
				if _, _, err := MakeCredential(ekPub, name, secret); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTrimDER: NV areas may be larger than the certificate they hold.
func TestTrimDER(t *testing.T) {
	long := append([]byte{0x30, 0x82, 0x01, 0x00}, make([]byte, 0x100)...)
	for name, tc := range map[string]struct{ in, want []byte }{
		"short form, padded": {[]byte{0x30, 0x02, 0xaa, 0xbb, 0xff, 0xff}, []byte{0x30, 0x02, 0xaa, 0xbb}},
		"long form, padded":  {append(append([]byte{}, long...), 0xff, 0xff), long},
		"exact":              {long, long},
		"truncated":          {long[:100], long[:100]},
		"not a sequence":     {[]byte{0x04, 0x01, 0x00, 0xff}, []byte{0x04, 0x01, 0x00, 0xff}},
		"empty":              {nil, nil},
	} {
		if got := trimDER(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: trimDER = %x, want %x", name, got, tc.want)
		}
	}
}
