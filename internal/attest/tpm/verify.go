package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// Evidence is the tpm member of the evidence document, already decoded from
// base64 by the caller.
type Evidence struct {
	AKPublic  []byte                       // TPM2B_PUBLIC as tpm2_createak -u writes it
	Quote     []byte                       // TPMS_ATTEST bytes that were signed (tpm2_quote -m)
	Signature []byte                       // TPMT_SIGNATURE (tpm2_quote -s)
	PCRs      map[string]map[string]string // bank ("sha256") → PCR index ("16") → hex value
}

// Policy is what was registered for the agent's host.
type Policy struct {
	// AKPublic is the enrolled TPM2B_PUBLIC. The quote's signature is
	// verified with this key, never with the one in the evidence.
	AKPublic []byte
	// PCRs are the expected values, bank → index → hex. Every expected PCR
	// must be in the quote and equal. Empty means no PCR is pinned.
	PCRs map[string]map[string]string
}

// Counters are the quote's TPMS_CLOCK_INFO counters. Store the counters of
// each accepted quote per AK and pass them back as prev next time.
type Counters struct {
	Clock                    uint64
	ResetCount, RestartCount uint32
}

// Check is the outcome of one verification step. Expected and Actual carry
// hex values (digests, names, not whole structures) so a human can compare
// them; Detail says what was wrong.
type Check struct {
	Name, Outcome, Expected, Actual, Detail string
}

// Check names, stable: the API, the audit log and the UI show them.
const (
	CheckAK        = "tpm.ak"
	CheckMagic     = "tpm.quote.magic"
	CheckType      = "tpm.quote.type"
	CheckSignature = "tpm.signature"
	CheckNonce     = "tpm.nonce"
	CheckPCRDigest = "tpm.pcr_digest"
	CheckPCRs      = "tpm.pcrs"
	CheckClock     = "tpm.clock"
)

// Check outcomes.
const (
	Pass    = "pass"
	Fail    = "fail"
	Skipped = "skipped"
)

// VerifyQuote runs every check and returns all of them, in a fixed order
// (never stopping at the first failure, so the caller can show every failed
// check), plus the quote's counters when the quote parsed, even if a check
// failed: store them as the AK's last counters only when ok.
//
// extraData is the qualifying data the quote must carry (for Lanyard,
// SHA-256(nonce || JCS(measurements))). prev is the last accepted counters
// for this AK, nil on first use: the reset and restart counts may only
// increase, and if both are equal the clock must be greater than before.
//
// The quote's qualifiedSigner is not checked: it is the AK's hierarchy-
// qualified name, which needs the parent's; the signature with the enrolled
// AK already proves which key quoted.
//
// ok is true when no check failed. A check is skipped only when there is
// nothing to check (no expected PCRs, no previous counters). Any bytes in ev
// yield failed checks with a Detail, never a panic.
func VerifyQuote(ev Evidence, pol Policy, extraData []byte, prev *Counters) (checks []Check, cur *Counters, ok bool) {
	checks = make([]Check, 0, 8)
	add := func(c Check) { checks = append(checks, c) }

	enrolled, enrolledErr := parseAKPublic(pol.AKPublic)
	add(checkAK(ev.AKPublic, pol.AKPublic, enrolled, enrolledErr))

	q, qErr := parseAttest(ev.Quote)
	qDetail := ""
	if qErr != nil {
		q, qDetail = nil, "quote does not parse: "+qErr.Error()
	}
	add(checkMagic(ev.Quote))
	add(checkType(ev.Quote))
	add(checkSignature(ev, enrolled, enrolledErr))

	if q == nil {
		for _, name := range []string{CheckNonce, CheckPCRDigest, CheckPCRs, CheckClock} {
			add(Check{Name: name, Outcome: Fail, Detail: qDetail})
		}
	} else {
		add(checkNonce(q, extraData))
		add(checkPCRDigest(q, ev.PCRs))
		add(checkPCRs(q, ev.PCRs, pol.PCRs))
		cur = &Counters{Clock: q.clock, ResetCount: q.resetCount, RestartCount: q.restartCount}
		add(checkClock(cur, prev, q.safe))
	}

	ok = true
	for _, c := range checks {
		if c.Outcome == Fail {
			ok = false
		}
	}
	return checks, cur, ok
}

func checkAK(evidenceAK, enrolledAK []byte, enrolled *akKey, enrolledErr error) Check {
	c := Check{Name: CheckAK, Outcome: Fail}
	if enrolledErr != nil {
		c.Detail = "enrolled " + enrolledErr.Error()
		return c
	}
	c.Expected = hex.EncodeToString(enrolled.name)
	sent := enrolled
	if !bytes.Equal(evidenceAK, enrolledAK) { // the common case needs no second parse
		var err error
		if sent, err = parseAKPublic(evidenceAK); err != nil {
			c.Detail = err.Error()
			return c
		}
	}
	c.Actual = hex.EncodeToString(sent.name)
	switch {
	case !bytes.Equal(sent.name, enrolled.name):
		c.Detail = "AK Name is not the enrolled AK's"
	case !bytes.Equal(sent.area, enrolled.area):
		c.Detail = "AK public area differs from the enrolled one"
	default:
		if err := enrolled.checkAttestationKey(); err != nil {
			c.Detail = err.Error()
			return c
		}
		c.Outcome = Pass
	}
	return c
}

func checkMagic(quote []byte) Check {
	c := Check{Name: CheckMagic, Outcome: Fail, Expected: fmt.Sprintf("%08x", uint32(tpmGeneratedValue))}
	if len(quote) < 4 {
		c.Detail = "quote is shorter than its magic"
		return c
	}
	c.Actual = hex.EncodeToString(quote[:4])
	if binary.BigEndian.Uint32(quote) != tpmGeneratedValue {
		c.Detail = "magic is not TPM_GENERATED_VALUE: the TPM did not generate this structure"
		return c
	}
	c.Outcome = Pass
	return c
}

func checkType(quote []byte) Check {
	c := Check{Name: CheckType, Outcome: Fail, Expected: fmt.Sprintf("%04x", tpmSTAttestQuote)}
	if len(quote) < 6 {
		c.Detail = "quote is shorter than its type"
		return c
	}
	c.Actual = hex.EncodeToString(quote[4:6])
	if binary.BigEndian.Uint16(quote[4:]) != tpmSTAttestQuote {
		c.Detail = "attestation type is not TPM_ST_ATTEST_QUOTE"
		return c
	}
	c.Outcome = Pass
	return c
}

// checkSignature verifies the signature with the enrolled AK: the key in
// the evidence is only compared (tpm.ak), never trusted.
func checkSignature(ev Evidence, enrolled *akKey, enrolledErr error) Check {
	digest := sha256.Sum256(ev.Quote)
	c := Check{Name: CheckSignature, Outcome: Fail, Actual: hex.EncodeToString(digest[:])}
	if enrolledErr != nil {
		c.Detail = "enrolled " + enrolledErr.Error()
		return c
	}
	c.Expected = hex.EncodeToString(enrolled.name)
	key, err := enrolled.publicKey()
	if err != nil {
		c.Detail = "enrolled " + err.Error()
		return c
	}
	sig, err := parseSignature(ev.Signature)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	if sig.hash != tpm2.TPMAlgSHA256 {
		c.Detail = fmt.Sprintf("signature hash %#04x is not SHA-256", uint16(sig.hash))
		return c
	}
	c.Detail = "signature over SHA-256 of the quote does not verify with the enrolled AK"
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if sig.alg != tpm2.TPMAlgECDSA {
			c.Detail = "ECC AK but the signature is not ECDSA"
			return c
		}
		r, s := new(big.Int).SetBytes(sig.r), new(big.Int).SetBytes(sig.s)
		if ecdsa.Verify(k, digest[:], r, s) {
			c.Outcome, c.Detail = Pass, ""
		}
	case *rsa.PublicKey:
		var err error
		switch sig.alg {
		case tpm2.TPMAlgRSASSA:
			err = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig.rsa)
		case tpm2.TPMAlgRSAPSS:
			// TPMs differ in the salt length they use (digest size, or the
			// maximum): accept any.
			err = rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig.rsa, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		default:
			c.Detail = "RSA AK but the signature is not RSASSA or RSAPSS"
			return c
		}
		if err == nil {
			c.Outcome, c.Detail = Pass, ""
		}
	}
	return c
}

func checkNonce(q *attest, extraData []byte) Check {
	c := Check{Name: CheckNonce, Outcome: Fail, Expected: hex.EncodeToString(extraData), Actual: hex.EncodeToString(q.extraData)}
	if subtle.ConstantTimeCompare(q.extraData, extraData) != 1 {
		c.Detail = "quote's qualifying data (extraData) is not the challenge's"
		return c
	}
	c.Outcome = Pass
	return c
}

// evidencePCR decodes one evidence PCR value; ok is false if it is missing.
func evidencePCR(pcrs map[string]map[string]string, bank string, idx int) (v []byte, ok bool, err error) {
	s, ok := pcrs[bank][strconv.Itoa(idx)]
	if !ok {
		return nil, false, nil
	}
	v, err = hex.DecodeString(s)
	return v, true, err
}

// checkPCRDigest recomputes the quote's PCR digest from the evidence values:
// banks in selection order, indices ascending, values concatenated, SHA-256
// (the hash of the signing scheme, which checkSignature pins to SHA-256).
// The evidence must have exactly the selected PCRs.
func checkPCRDigest(q *attest, pcrs map[string]map[string]string) Check {
	c := Check{Name: CheckPCRDigest, Outcome: Fail, Expected: hex.EncodeToString(q.pcrDigest)}
	var problems []string
	h := sha256.New()
	selected := map[string]map[string]bool{}
	for _, sel := range q.selection {
		bank := bankName(sel.hash)
		selected[bank] = map[string]bool{}
		hh, known := hashFor(sel.hash)
		for _, idx := range sel.pcrs {
			selected[bank][strconv.Itoa(idx)] = true
			v, ok, err := evidencePCR(pcrs, bank, idx)
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s/%d is quoted but missing from the evidence", bank, idx))
			case err != nil:
				problems = append(problems, fmt.Sprintf("%s/%d is not hex", bank, idx))
			case !known || len(v) != hh.Size():
				problems = append(problems, fmt.Sprintf("%s/%d has %d bytes, not a %s digest", bank, idx, len(v), bank))
			}
			h.Write(v)
		}
	}
	for _, bank := range sortedKeys(pcrs) {
		for _, idx := range sortedKeys(pcrs[bank]) {
			if !selected[bank][idx] {
				problems = append(problems, fmt.Sprintf("%s/%s is in the evidence but not in the quote's selection", bank, idx))
			}
		}
	}
	sum := h.Sum(nil)
	c.Actual = hex.EncodeToString(sum)
	if !bytes.Equal(sum, q.pcrDigest) {
		problems = append(problems, "the evidence PCR values do not hash to the quoted PCR digest")
	}
	if len(problems) > 0 {
		c.Detail = strings.Join(problems, "; ")
		return c
	}
	c.Outcome = Pass
	return c
}

// checkPCRs compares the expected PCR values with the evidence's, which
// tpm.pcr_digest ties to the signed quote.
func checkPCRs(q *attest, pcrs, expected map[string]map[string]string) Check {
	c := Check{Name: CheckPCRs, Outcome: Fail}
	if len(expected) == 0 {
		c.Outcome, c.Detail = Skipped, "no expected PCR values registered"
		return c
	}
	selected := map[string]map[int]bool{}
	for _, sel := range q.selection {
		m := map[int]bool{}
		for _, idx := range sel.pcrs {
			m[idx] = true
		}
		selected[bankName(sel.hash)] = m
	}
	var problems, exp, act []string
	for _, bank := range sortedKeys(expected) {
		for _, key := range sortedKeys(expected[bank]) {
			label := bank + "/" + key
			want, err := hex.DecodeString(expected[bank][key])
			if err != nil {
				problems = append(problems, label+": expected value is not hex")
				continue
			}
			idx, err := strconv.Atoi(key)
			if err != nil || idx < 0 || strconv.Itoa(idx) != key {
				problems = append(problems, label+": expected PCR index is not a number")
				continue
			}
			if !selected[bank][idx] {
				problems = append(problems, label+" is not in the quote's selection")
				exp, act = append(exp, label+"="+hex.EncodeToString(want)), append(act, label+"=")
				continue
			}
			got, ok, err := evidencePCR(pcrs, bank, idx)
			if !ok || err != nil || !bytes.Equal(got, want) {
				problems = append(problems, label+" differs from the expected value")
				exp, act = append(exp, label+"="+hex.EncodeToString(want)), append(act, label+"="+hex.EncodeToString(got))
			}
		}
	}
	if len(problems) > 0 {
		c.Expected, c.Actual = strings.Join(exp, " "), strings.Join(act, " ")
		c.Detail = strings.Join(problems, "; ")
		return c
	}
	c.Outcome = Pass
	return c
}

func (c *Counters) String() string {
	return fmt.Sprintf("reset=%d restart=%d clock=%d", c.ResetCount, c.RestartCount, c.Clock)
}

// checkClock refuses a quote whose counters are not after the last accepted
// ones, which catches a replayed older quote even with a reused nonce.
func checkClock(cur, prev *Counters, safe bool) Check {
	c := Check{Name: CheckClock, Outcome: Fail, Actual: cur.String()}
	if prev == nil {
		c.Outcome, c.Detail = Skipped, "first quote from this AK"
		return c
	}
	c.Expected = "after " + prev.String()
	var after bool
	switch {
	case cur.ResetCount != prev.ResetCount:
		after = cur.ResetCount > prev.ResetCount
	case cur.RestartCount != prev.RestartCount:
		after = cur.RestartCount > prev.RestartCount
	default:
		after = cur.Clock > prev.Clock
	}
	if !after {
		c.Detail = "the quote's clock/reset/restart counters went backwards: a replayed or older quote"
		if !safe {
			c.Detail += " (the TPM reports its clock may have been reset without an orderly shutdown)"
		}
		return c
	}
	c.Outcome = Pass
	return c
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
