package tpm

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
)

// simMu serialises the in-process simulator: only one may be open per
// process.
var simMu sync.Mutex

// openSim opens the TPM simulator for the rest of the test.
func openSim(tb testing.TB) transport.TPM {
	tb.Helper()
	simMu.Lock()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		simMu.Unlock()
		tb.Fatalf("open TPM simulator: %v", err)
	}
	tb.Cleanup(func() {
		sim.Close()
		simMu.Unlock()
	})
	return sim
}

func newTestAttester(tb testing.TB, t transport.TPM, template tpm2.TPMTPublic) *Attester {
	tb.Helper()
	a, err := newAttester(t, template)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := a.Close(); err != nil {
			tb.Error(err)
		}
	})
	return a
}

func extendPCR(tb testing.TB, t transport.TPM, pcr int, data string) {
	tb.Helper()
	d := sha256.Sum256([]byte(data))
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d[:]}}},
	}.Execute(t)
	if err != nil {
		tb.Fatalf("extend PCR %d: %v", pcr, err)
	}
}

// otherAKTemplate is AKTemplate with a different unique value, so the TPM
// derives a different key from the same seed.
func otherAKTemplate() tpm2.TPMTPublic {
	t := AKTemplate
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: []byte("another AK")}})
	return t
}

func rsaAKTemplate(scheme tpm2.TPMAlgID) tpm2.TPMTPublic {
	details := tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})
	if scheme == tpm2.TPMAlgRSAPSS {
		details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: tpm2.TPMAlgSHA256})
	}
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgRSA,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme:  tpm2.TPMTRSAScheme{Scheme: scheme, Details: details},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}),
	}
}

var testPCRs = []int{0, 16, 23}

func testExtraData(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

// cloneEvidence deep-copies ev so a test case can tamper with it.
func cloneEvidence(ev *Evidence) Evidence {
	out := Evidence{
		AKPublic:  bytes.Clone(ev.AKPublic),
		Quote:     bytes.Clone(ev.Quote),
		Signature: bytes.Clone(ev.Signature),
		PCRs:      map[string]map[string]string{},
	}
	for bank, m := range ev.PCRs {
		out.PCRs[bank] = maps.Clone(m)
	}
	return out
}

// quoteOffsets locates fields in a TPMS_ATTEST quote.
func quoteOffsets(tb testing.TB, q []byte) (extraData, clock, pcrDigest int) {
	tb.Helper()
	signer := int(binary.BigEndian.Uint16(q[6:]))
	extraData = 8 + signer + 2
	clock = extraData + int(binary.BigEndian.Uint16(q[8+signer:]))
	pcrDigest = len(q) - sha256.Size
	return
}

func checksByName(checks []Check) map[string]Check {
	m := map[string]Check{}
	for _, c := range checks {
		m[c.Name] = c
	}
	return m
}

var allChecks = []string{CheckAK, CheckMagic, CheckType, CheckSignature, CheckNonce, CheckPCRDigest, CheckPCRs, CheckClock}

// assertChecks requires exactly the checks in wantFail to fail.
func assertChecks(t *testing.T, checks []Check, ok bool, wantFail ...string) {
	t.Helper()
	var names []string
	for _, c := range checks {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, allChecks) {
		t.Fatalf("checks = %v, want %v", names, allChecks)
	}
	for _, c := range checks {
		failed := c.Outcome == Fail
		if failed != slices.Contains(wantFail, c.Name) {
			t.Errorf("%s: outcome %q (expected %q actual %q detail %q), want fail=%v",
				c.Name, c.Outcome, c.Expected, c.Actual, c.Detail, !failed)
		}
		if failed && c.Detail == "" {
			t.Errorf("%s failed without a detail", c.Name)
		}
	}
	if ok != (len(wantFail) == 0) {
		t.Errorf("ok = %v with failures %v", ok, wantFail)
	}
}

func TestVerifyQuote(t *testing.T) {
	sim := openSim(t)
	extendPCR(t, sim, 16, "agent runtime")
	a := newTestAttester(t, sim, AKTemplate)
	other := newTestAttester(t, sim, otherAKTemplate())

	nonce := testExtraData("challenge")
	ev, err := a.Quote(nonce, testPCRs)
	if err != nil {
		t.Fatal(err)
	}
	otherEv, err := other.Quote(nonce, testPCRs)
	if err != nil {
		t.Fatal(err)
	}
	later, err := a.Quote(testExtraData("a later challenge"), testPCRs)
	if err != nil {
		t.Fatal(err)
	}
	pol := Policy{AKPublic: a.AKPublic(), PCRs: map[string]map[string]string{"sha256": {"16": ev.PCRs["sha256"]["16"]}}}
	_, genuine, _ := VerifyQuote(*ev, pol, nonce, nil)
	_, laterCounters, _ := VerifyQuote(*later, pol, nil, nil)
	if genuine == nil || laterCounters == nil {
		t.Fatal("quotes from the simulator did not parse")
	}
	offExtra, offClock, offDigest := quoteOffsets(t, ev.Quote)

	tests := []struct {
		name      string
		tamper    func(ev *Evidence, pol *Policy, extraData *[]byte, prev **Counters)
		wantFail  []string
		wantClock string // if set, the tpm.clock outcome
	}{
		{name: "genuine quote, first use", wantClock: Skipped},
		{name: "genuine quote after older counters", tamper: func(_ *Evidence, _ *Policy, _ *[]byte, prev **Counters) {
			*prev = &Counters{} // the simulator's clock has advanced past zero by the time it quotes
		}, wantClock: Pass},
		{name: "no expected PCRs", tamper: func(_ *Evidence, pol *Policy, _ *[]byte, _ **Counters) { pol.PCRs = nil }},
		{name: "tampered magic", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) { ev.Quote[0] ^= 1 },
			wantFail: []string{CheckMagic, CheckSignature}},
		{name: "tampered type", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) { ev.Quote[5] = 0x14 }, // TPM_ST_ATTEST_CERTIFY
			wantFail: []string{CheckType, CheckSignature, CheckNonce, CheckPCRDigest, CheckPCRs, CheckClock}},
		{name: "tampered extraData", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) { ev.Quote[offExtra] ^= 1 },
			wantFail: []string{CheckNonce, CheckSignature}},
		{name: "tampered pcrDigest", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) { ev.Quote[offDigest] ^= 1 },
			wantFail: []string{CheckPCRDigest, CheckSignature}},
		{name: "tampered clock", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, prev **Counters) {
			clear(ev.Quote[offClock : offClock+8+4+4]) // clock, resetCount, restartCount
			*prev = &Counters{Clock: genuine.Clock, ResetCount: genuine.ResetCount, RestartCount: genuine.RestartCount + 1}
		}, wantFail: []string{CheckClock, CheckSignature}},
		{name: "signature by another AK", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) { ev.Signature = otherEv.Signature },
			wantFail: []string{CheckSignature}},
		{name: "quote by another AK", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) { *ev = cloneEvidence(otherEv) },
			wantFail: []string{CheckAK, CheckSignature}},
		{name: "another enrolled AK", tamper: func(_ *Evidence, pol *Policy, _ *[]byte, _ **Counters) { pol.AKPublic = otherEv.AKPublic },
			wantFail: []string{CheckAK, CheckSignature}},
		{name: "garbage signature", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) {
			ev.Signature = []byte{0, 0x18, 0, 0x0b, 0, 1, 1, 0, 1, 1}
		},
			wantFail: []string{CheckSignature}},
		{name: "wrong nonce", tamper: func(_ *Evidence, _ *Policy, extraData *[]byte, _ **Counters) {
			*extraData = testExtraData("another challenge")
		},
			wantFail: []string{CheckNonce}},
		{name: "evidence PCR value differs from the quoted one", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) {
			ev.PCRs["sha256"]["0"] = hex.EncodeToString(make([]byte, 31)) + "01"
		}, wantFail: []string{CheckPCRDigest}},
		{name: "quoted PCR missing from evidence", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) { delete(ev.PCRs["sha256"], "23") },
			wantFail: []string{CheckPCRDigest}},
		{name: "evidence PCR not quoted", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) {
			ev.PCRs["sha256"]["7"] = hex.EncodeToString(make([]byte, 32))
		}, wantFail: []string{CheckPCRDigest}},
		{name: "expected PCR differs", tamper: func(_ *Evidence, pol *Policy, _ *[]byte, _ **Counters) {
			pol.PCRs = map[string]map[string]string{"sha256": {"16": hex.EncodeToString(make([]byte, 32))}}
		}, wantFail: []string{CheckPCRs}},
		{name: "expected PCR not quoted", tamper: func(_ *Evidence, pol *Policy, _ *[]byte, _ **Counters) {
			pol.PCRs = map[string]map[string]string{"sha256": {"10": hex.EncodeToString(make([]byte, 32))}}
		}, wantFail: []string{CheckPCRs}},
		{name: "replayed older quote", tamper: func(_ *Evidence, _ *Policy, _ *[]byte, prev **Counters) { *prev = laterCounters },
			wantFail: []string{CheckClock}},
		{name: "replayed same quote", tamper: func(_ *Evidence, _ *Policy, _ *[]byte, prev **Counters) { *prev = genuine },
			wantFail: []string{CheckClock}},
		{name: "truncated quote", tamper: func(ev *Evidence, _ *Policy, _ *[]byte, _ **Counters) { ev.Quote = ev.Quote[:len(ev.Quote)-1] },
			wantFail: []string{CheckSignature, CheckNonce, CheckPCRDigest, CheckPCRs, CheckClock}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, p, x := cloneEvidence(ev), pol, bytes.Clone(nonce)
			var prev *Counters
			if tc.tamper != nil {
				tc.tamper(&e, &p, &x, &prev)
			}
			checks, cur, ok := VerifyQuote(e, p, x, prev)
			assertChecks(t, checks, ok, tc.wantFail...)
			if tc.wantClock != "" {
				if got := checksByName(checks)[CheckClock].Outcome; got != tc.wantClock {
					t.Errorf("tpm.clock = %q, want %q", got, tc.wantClock)
				}
			}
			if len(tc.wantFail) == 0 && (cur == nil || *cur != *genuine) {
				t.Errorf("counters = %v, want %v", cur, genuine)
			}
		})
	}
}

func TestVerifyQuoteRSA(t *testing.T) {
	sim := openSim(t)
	for _, scheme := range []tpm2.TPMAlgID{tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS} {
		t.Run(map[tpm2.TPMAlgID]string{tpm2.TPMAlgRSASSA: "RSASSA", tpm2.TPMAlgRSAPSS: "RSAPSS"}[scheme], func(t *testing.T) {
			a := newTestAttester(t, sim, rsaAKTemplate(scheme))
			nonce := testExtraData("rsa")
			ev, err := a.Quote(nonce, []int{16})
			if err != nil {
				t.Fatal(err)
			}
			if got := tpm2.TPMAlgID(binary.BigEndian.Uint16(ev.Signature)); got != scheme {
				t.Fatalf("signature scheme %#x, want %#x", got, scheme)
			}
			checks, _, ok := VerifyQuote(*ev, Policy{AKPublic: a.AKPublic()}, nonce, nil)
			assertChecks(t, checks, ok)

			ev.Signature[len(ev.Signature)-1] ^= 1
			checks, _, ok = VerifyQuote(*ev, Policy{AKPublic: a.AKPublic()}, nonce, nil)
			assertChecks(t, checks, ok, CheckSignature)
		})
	}
}

func TestAKName(t *testing.T) {
	sim := openSim(t)
	a := newTestAttester(t, sim, AKTemplate)
	got, err := AKName(a.AKPublic())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, a.ak.Name.Buffer) {
		t.Errorf("AKName = %x, TPM says %x", got, a.ak.Name.Buffer)
	}
	for _, bad := range [][]byte{nil, {0}, {0, 5, 1, 2, 3}, append(bytes.Clone(a.AKPublic()), 0)} {
		if _, err := AKName(bad); err == nil {
			t.Errorf("AKName(%x) did not fail", bad)
		}
	}
}

// softwareEK is an EK template filled with a key that lives in no TPM.
func softwareEK(tb testing.TB) []byte {
	tb.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	pt := k.PublicKey().Bytes() // 0x04 || X || Y
	ek := tpm2.ECCEKTemplate
	ek.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: pt[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: pt[33:]},
	})
	return tpm2.Marshal(tpm2.New2B(ek))
}

func TestCredentialActivation(t *testing.T) {
	sim := openSim(t)
	secret := []byte("enrolment secret 0123456789abcdef")

	t.Run("round trip", func(t *testing.T) {
		a := newTestAttester(t, sim, AKTemplate)
		ek, err := a.EKPublic()
		if err != nil {
			t.Fatal(err)
		}
		name, err := AKName(a.AKPublic())
		if err != nil {
			t.Fatal(err)
		}
		blob, enc, err := MakeCredential(ek, name, secret)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.ActivateCredential(blob, enc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, secret) {
			t.Errorf("activated %q, want %q", got, secret)
		}
	})

	t.Run("RSA EK round trip", func(t *testing.T) {
		a := newTestAttester(t, sim, AKTemplate)
		a.ekTemplate = tpm2.RSAEKTemplate
		ek, err := a.EKPublic()
		if err != nil {
			t.Fatal(err)
		}
		name, _ := AKName(a.AKPublic())
		blob, enc, err := MakeCredential(ek, name, secret)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.ActivateCredential(blob, enc)
		if err != nil || !bytes.Equal(got, secret) {
			t.Errorf("activated %q, %v; want %q", got, err, secret)
		}
	})

	refusals := []struct {
		name string
		make func(a *Attester, ek, akName []byte) (blob, enc []byte, err error)
	}{
		{"another key's name", func(a *Attester, ek, _ []byte) ([]byte, []byte, error) {
			other := newTestAttester(t, sim, otherAKTemplate())
			name, err := AKName(other.AKPublic())
			if err != nil {
				return nil, nil, err
			}
			return MakeCredential(ek, name, secret)
		}},
		{"another TPM's EK", func(_ *Attester, _, akName []byte) ([]byte, []byte, error) {
			return MakeCredential(softwareEK(t), akName, secret)
		}},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAttester(t, sim, AKTemplate)
			ek, err := a.EKPublic()
			if err != nil {
				t.Fatal(err)
			}
			name, _ := AKName(a.AKPublic())
			blob, enc, err := tc.make(a, ek, name)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := a.ActivateCredential(blob, enc); err == nil {
				t.Errorf("activation succeeded with %q", got)
			}
		})
	}

	t.Run("bad inputs", func(t *testing.T) {
		a := newTestAttester(t, sim, AKTemplate)
		ek, _ := a.EKPublic()
		name, _ := AKName(a.AKPublic())
		for _, c := range []struct{ ek, name, secret []byte }{
			{nil, name, secret},
			{ek[:10], name, secret},
			{a.AKPublic(), name, secret}, // a signing key is no EK
			{ek, name[:5], secret},
			{ek, name, nil},
			{ek, name, make([]byte, 65)},
		} {
			if _, _, err := MakeCredential(c.ek, c.name, c.secret); err == nil {
				t.Errorf("MakeCredential(%x, %x, %x) did not fail", c.ek, c.name, c.secret)
			}
		}
	})
}

func TestCheckClock(t *testing.T) {
	prev := &Counters{Clock: 1000, ResetCount: 5, RestartCount: 2}
	tests := []struct {
		name string
		cur  Counters
		want string
	}{
		{"clock advanced", Counters{Clock: 1001, ResetCount: 5, RestartCount: 2}, Pass},
		{"clock equal", Counters{Clock: 1000, ResetCount: 5, RestartCount: 2}, Fail},
		{"clock back", Counters{Clock: 999, ResetCount: 5, RestartCount: 2}, Fail},
		{"restart advanced", Counters{Clock: 10, ResetCount: 5, RestartCount: 3}, Pass},
		{"restart back", Counters{Clock: 2000, ResetCount: 5, RestartCount: 1}, Fail},
		{"reset advanced, restart cleared", Counters{Clock: 10, ResetCount: 6, RestartCount: 0}, Pass},
		{"reset back", Counters{Clock: 9000, ResetCount: 4, RestartCount: 9}, Fail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkClock(&tc.cur, prev, true); got.Outcome != tc.want {
				t.Errorf("outcome %q (%s), want %q", got.Outcome, got.Detail, tc.want)
			}
		})
	}
}

func BenchmarkVerifyQuote(b *testing.B) {
	sim := openSim(b)
	for _, bc := range []struct {
		name     string
		template tpm2.TPMTPublic
	}{
		{"ECDSA-P256", AKTemplate},
		{"RSASSA-2048", rsaAKTemplate(tpm2.TPMAlgRSASSA)},
	} {
		a := newTestAttester(b, sim, bc.template)
		nonce := testExtraData("bench")
		ev, err := a.Quote(nonce, testPCRs)
		if err != nil {
			b.Fatal(err)
		}
		pol := Policy{AKPublic: a.AKPublic(), PCRs: map[string]map[string]string{"sha256": {"16": ev.PCRs["sha256"]["16"]}}}
		prev := &Counters{}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok := VerifyQuote(*ev, pol, nonce, prev); !ok {
					b.Fatal("quote did not verify")
				}
			}
		})
	}
}
