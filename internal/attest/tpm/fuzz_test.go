package tpm

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// The seed corpus in testdata/fuzz/FuzzVerifyQuote is generated from the TPM
// simulator; regenerate it with
//
//	go test ./internal/attest/tpm -run TestWriteFuzzSeeds -update-fuzz-seeds
var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite testdata/fuzz/FuzzVerifyQuote from the TPM simulator")

// FuzzVerifyQuote feeds arbitrary evidence and policy to the verifier: it
// must never panic, must always return the same eight checks in order, and
// may only report ok when every check passed or had nothing to check.
func FuzzVerifyQuote(f *testing.F) {
	f.Add([]byte{}, []byte{}, []byte{}, []byte{}, []byte{}, "")
	f.Fuzz(func(t *testing.T, enrolledAK, akPublic, quote, signature, extraData []byte, pcrsJSON string) {
		var pcrs, expected map[string]map[string]string
		var doc struct{ Evidence, Expected map[string]map[string]string }
		if json.Unmarshal([]byte(pcrsJSON), &doc) == nil {
			pcrs, expected = doc.Evidence, doc.Expected
		}
		ev := Evidence{AKPublic: akPublic, Quote: quote, Signature: signature, PCRs: pcrs}
		checks, cur, ok := VerifyQuote(ev, Policy{AKPublic: enrolledAK, PCRs: expected}, extraData, &Counters{})

		var names []string
		anyFail := false
		for _, c := range checks {
			names = append(names, c.Name)
			switch c.Outcome {
			case Pass:
			case Fail, Skipped:
				anyFail = anyFail || c.Outcome == Fail
				if c.Detail == "" {
					t.Errorf("%s is %s without a detail", c.Name, c.Outcome)
				}
			default:
				t.Errorf("%s: outcome %q", c.Name, c.Outcome)
			}
		}
		if !slices.Equal(names, allChecks) {
			t.Fatalf("checks = %v", names)
		}
		if ok == anyFail {
			t.Errorf("ok = %v but a check failed = %v", ok, anyFail)
		}
		if _, err := parseAttest(quote); (err == nil) != (cur != nil) {
			t.Errorf("counters %v returned for a quote that parses = %v", cur, err == nil)
		}
		if ok {
			// Only the real thing verifies: the signature must come from
			// the enrolled key over these exact bytes.
			if _, err := AKName(enrolledAK); err != nil {
				t.Errorf("ok with an enrolled AK that does not parse: %v", err)
			}
		}
	})
}

// fuzzSeed is one FuzzVerifyQuote input.
type fuzzSeed struct {
	enrolledAK, akPublic, quote, signature, extraData []byte
	pcrs                                              string
}

func (s fuzzSeed) encode() string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, v := range [][]byte{s.enrolledAK, s.akPublic, s.quote, s.signature, s.extraData} {
		fmt.Fprintf(&b, "[]byte(%q)\n", v)
	}
	fmt.Fprintf(&b, "string(%q)\n", s.pcrs)
	return b.String()
}

// TestWriteFuzzSeeds regenerates the seed corpus (see updateFuzzSeeds).
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateFuzzSeeds {
		t.Skip("run with -update-fuzz-seeds to rewrite testdata/fuzz/FuzzVerifyQuote")
	}
	sim := openSim(t)
	extendPCR(t, sim, 16, "agent runtime")
	seeds := map[string]fuzzSeed{}
	for name, template := range map[string]tpm2.TPMTPublic{
		"ecc":    AKTemplate,
		"rsassa": rsaAKTemplate(tpm2.TPMAlgRSASSA),
		"rsapss": rsaAKTemplate(tpm2.TPMAlgRSAPSS),
	} {
		a := newTestAttester(t, sim, template)
		nonce := testExtraData("seed " + name)
		ev, err := a.Quote(nonce, testPCRs)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := json.Marshal(map[string]any{
			"Evidence": ev.PCRs,
			"Expected": map[string]map[string]string{"sha256": {"16": ev.PCRs["sha256"]["16"]}},
		})
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = fuzzSeed{a.AKPublic(), ev.AKPublic, ev.Quote, ev.Signature, nonce, string(doc)}
		tampered := seeds[name]
		tampered.quote = slices.Clone(ev.Quote)
		tampered.quote[len(tampered.quote)-1] ^= 1
		seeds[name+"-tampered-digest"] = tampered
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzVerifyQuote")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s.encode()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFuzzSeedsVerify keeps the generated seeds honest: the genuine ones
// must verify, or the fuzzer starts from nothing interesting.
func TestFuzzSeedsVerify(t *testing.T) {
	for _, name := range []string{"ecc", "rsassa", "rsapss"} {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzVerifyQuote", name))
			if err != nil {
				t.Fatal(err)
			}
			s := decodeSeed(t, string(raw))
			var doc struct{ Evidence, Expected map[string]map[string]string }
			if err := json.Unmarshal([]byte(s.pcrs), &doc); err != nil {
				t.Fatal(err)
			}
			ev := Evidence{AKPublic: s.akPublic, Quote: s.quote, Signature: s.signature, PCRs: doc.Evidence}
			checks, _, ok := VerifyQuote(ev, Policy{AKPublic: s.enrolledAK, PCRs: doc.Expected}, s.extraData, nil)
			assertChecks(t, checks, ok)
		})
	}
}

func decodeSeed(t *testing.T, raw string) fuzzSeed {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(raw), "\n")
	if len(lines) != 7 || lines[0] != "go test fuzz v1" {
		t.Fatalf("seed has %d lines", len(lines))
	}
	var vals [6]string
	for i, l := range lines[1:] {
		l = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(l, "[]byte("), "string("), ")")
		if _, err := fmt.Sscanf(l, "%q", &vals[i]); err != nil {
			t.Fatalf("seed line %d: %v", i+1, err)
		}
	}
	return fuzzSeed{[]byte(vals[0]), []byte(vals[1]), []byte(vals[2]), []byte(vals[3]), []byte(vals[4]), vals[5]}
}
