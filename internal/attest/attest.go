// Package attest decides whether an agent is what its platform team registered: it hands
// out single-use challenges, verifies evidence (measurements, a TPM quote, Sigstore
// bundles) against the agent's reference values, and records a verdict — affirming or
// contraindicated, with every check's outcome — that gates token issuance.
//
// Every check is reported, pass or fail, with expected and actual values, so the API,
// the audit log and the UI show the same precise reason. A contraindicated verdict is a
// result, not an error.
package attest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gowebpki/jcs"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Check outcomes.
const (
	Pass    = "pass"
	Fail    = "fail"
	Skipped = "skipped"
)

// Check is one verification step's outcome.
type Check struct {
	Name     string `json:"name"`
	Outcome  string `json:"outcome"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Measurements are the digests an agent reports (spec: "Measurements").
type Measurements struct {
	ModelDigest        string `json:"model_digest,omitempty"`
	PromptDigest       string `json:"prompt_digest,omitempty"`
	ToolManifestDigest string `json:"tool_manifest_digest,omitempty"`
}

// TPMEvidence is the tpm member of the evidence document, base64 as sent.
type TPMEvidence struct {
	AKPublic  string                       `json:"ak_public"`
	Quote     string                       `json:"quote"`
	Signature string                       `json:"signature"`
	PCRs      map[string]map[string]string `json:"pcrs"`
}

// Evidence is the body of POST /v1/attestations without the client authentication.
type Evidence struct {
	Nonce string `json:"nonce"`
	// Measurements is kept as sent: the TPM quote binds JCS(measurements) exactly.
	Measurements    json.RawMessage   `json:"measurements"`
	TPM             *TPMEvidence      `json:"tpm,omitempty"`
	SigstoreBundles []json.RawMessage `json:"sigstore_bundles,omitempty"`
}

// TPMVerifier checks a TPM quote against the enrolled AK and expected PCRs. extraData
// is what the quote must carry; prev are the AK's last accepted counters (nil at first).
// It returns every check, and the quote's counters when the quote verified.
type TPMVerifier interface {
	VerifyTPM(ev *TPMEvidence, ref *lifecycle.TPMReference, extraData []byte, prev *store.TPMCounters) (checks []Check, cur *store.TPMCounters)
}

// SigstoreVerifier checks bundles against the agent's allowed signers and reports the
// digests ("sha256:<hex>") they prove, with one check per bundle.
type SigstoreVerifier interface {
	VerifyBundles(bundles []json.RawMessage, ids []lifecycle.SigstoreReference) (proven map[string]bool, checks []Check)
}

// Store is what the service needs from the database.
type Store interface {
	store.Attestations
}

// Auditor records verdicts durably.
type Auditor interface {
	Record(ctx context.Context, e audit.Event) error
}

// Suspender suspends an agent (lifecycle.Service.Transition).
type Suspender interface {
	Transition(ctx context.Context, actor, id string, action lifecycle.Action, reason string) (*lifecycle.Agent, error)
}

// Signer signs the result as a JWT.
type Signer interface {
	Sign(alg, typ string, payload []byte) (string, error)
}

// Options tune the service.
type Options struct {
	// Issuer is the iss of result tokens.
	Issuer string
	// ChallengeTTL is how long a nonce is valid. Default 60s.
	ChallengeTTL time.Duration
	// DefaultTTL is a result's lifetime when the agent sets none. Default 10m.
	DefaultTTL time.Duration
	// MaxOutstanding is how many unexpired challenges one client may hold. Default 16.
	MaxOutstanding int
	Now            func() time.Time
	// TPM and Sigstore verify host evidence; nil means the check fails with a clear
	// detail when an agent's policy requires it.
	TPM      TPMVerifier
	Sigstore SigstoreVerifier
}

// Service implements challenges and verification.
type Service struct {
	st    Store
	audit Auditor
	lc    Suspender
	keys  Signer
	opts  Options

	mu        sync.RWMutex
	listeners []func(agentID string)
}

// New returns a Service.
func New(st Store, aud Auditor, lc Suspender, keys Signer, opts Options) *Service {
	if opts.ChallengeTTL == 0 {
		opts.ChallengeTTL = time.Minute
	}
	if opts.DefaultTTL == 0 {
		opts.DefaultTTL = 10 * time.Minute
	}
	if opts.MaxOutstanding == 0 {
		opts.MaxOutstanding = 16
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{st: st, audit: aud, lc: lc, keys: keys, opts: opts}
}

// OnResult registers fn to run after each stored verdict (the token endpoint's cache
// drops the agent's entry).
func (s *Service) OnResult(fn func(agentID string)) {
	s.mu.Lock()
	s.listeners = append(s.listeners, fn)
	s.mu.Unlock()
}

// Challenge returns a fresh nonce (base64url of 32 random bytes) bound to the client,
// single use, valid for ChallengeTTL.
func (s *Service) Challenge(ctx context.Context, a *store.Agent) (string, time.Time, error) {
	// A client needs one challenge at a time; a cap keeps one client from filling the
	// table between purges.
	now := s.opts.Now().UTC()
	n, err := s.st.CountChallenges(ctx, a.ClientID, now)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("attest: count challenges: %w", err)
	}
	if n >= int64(s.opts.MaxOutstanding) {
		return "", time.Time{}, ErrTooManyChallenges
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, err
	}
	h := sha256.Sum256(b[:])
	exp := now.Add(s.opts.ChallengeTTL).Truncate(time.Microsecond)
	if err := s.st.CreateChallenge(ctx, &store.AttestationChallenge{NonceHash: h[:], ClientID: a.ClientID, ExpiresAt: exp}); err != nil {
		return "", time.Time{}, fmt.Errorf("attest: store challenge: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), exp, nil
}

// Result is a stored verdict with its checks and its signed form.
type Result struct {
	store.AttestationResult
	Checks       []Check
	Measurements Measurements
	Token        string
}

// ErrTooManyChallenges means the client already holds MaxOutstanding unexpired
// challenges (HTTP 429).
var ErrTooManyChallenges = errors.New("attest: too many outstanding challenges for this client; use one before asking for another, or wait until they expire")

// ErrMalformed wraps evidence that cannot be verified at all (HTTP 400).
var ErrMalformed = errors.New("attest: malformed evidence")

// Attest verifies ev for agent a and stores the verdict. It returns an error only for
// malformed evidence or internal failures; a failed check gives a contraindicated
// Result.
func (s *Service) Attest(ctx context.Context, a *store.Agent, ev *Evidence) (*Result, error) {
	var ref lifecycle.Reference
	if len(a.Reference) > 0 {
		if err := json.Unmarshal(a.Reference, &ref); err != nil {
			return nil, fmt.Errorf("attest: stored reference of %s: %w", a.ID, err)
		}
	}
	var m Measurements
	if len(ev.Measurements) == 0 || string(ev.Measurements) == "null" {
		return nil, fmt.Errorf("%w: measurements are required", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(ev.Measurements))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: measurements: %v", ErrMalformed, err)
	}
	canonical, err := jcs.Transform(ev.Measurements)
	if err != nil {
		return nil, fmt.Errorf("%w: measurements are not canonicalisable JSON: %v", ErrMalformed, err)
	}
	now := s.opts.Now().UTC().Truncate(time.Microsecond)
	var checks []Check

	// The nonce: single use, this client's, not expired.
	nonce, nonceCheck, err := s.consumeNonce(ctx, a, ev.Nonce, now)
	if err != nil {
		// An outage is not evidence: no verdict (and no suspension on mismatch).
		return nil, err
	}
	checks = append(checks, nonceCheck)

	checks = append(checks,
		digestCheck("measurements.model", ref.ModelDigest, m.ModelDigest),
		digestCheck("measurements.prompt", ref.PromptDigest, m.PromptDigest),
		digestCheck("measurements.tools", ref.ToolManifestDigest, m.ToolManifestDigest),
	)

	host := []string{}
	if ref.TPM != nil {
		host = append(host, "tpm")
		checks = append(checks, s.checkTPM(ctx, &ref, ev, nonce, canonical)...)
	}
	if len(ref.Sigstore) > 0 {
		host = append(host, "sigstore")
		checks = append(checks, s.checkSigstore(&ref, ev, m)...)
	}
	hostType := "none"
	if len(host) > 0 {
		hostType = strings.Join(host, "+")
	}

	status := store.AttestationAffirming
	var failed []string
	for _, c := range checks {
		if c.Outcome == Fail {
			status = store.AttestationContraindicated
			failed = append(failed, c.Name)
		}
	}
	ttl := time.Duration(a.AttestationTTLSeconds) * time.Second
	if ttl <= 0 {
		ttl = s.opts.DefaultTTL
	}
	mj, _ := json.Marshal(m)
	cj, _ := json.Marshal(checks)
	rec := store.AttestationResult{
		ID: newID(), AgentID: a.ID, Status: status, Host: hostType,
		Measurements: mj, Checks: cj, IssuedAt: now, ExpiresAt: now.Add(ttl),
	}
	if status != store.AttestationAffirming {
		rec.ExpiresAt = now // a contraindicated verdict never authorises anything
	}
	if err := s.st.CreateAttestation(ctx, &rec); err != nil {
		return nil, fmt.Errorf("attest: store result: %w", err)
	}
	res := &Result{AttestationResult: rec, Checks: checks, Measurements: m}
	res.Token, err = s.sign(res, ev.Nonce)
	if err != nil {
		return nil, err
	}

	e := audit.Event{Type: "attestation.verified", Actor: "agent:" + a.ID, AgentID: a.ID, Namespace: a.Namespace,
		Outcome: "success", RequestID: requestid.From(ctx),
		Data: map[string]any{"attestation_id": rec.ID, "status": status, "host": hostType,
			"model_digest": m.ModelDigest, "prompt_digest": m.PromptDigest, "tool_manifest_digest": m.ToolManifestDigest}}
	if status != store.AttestationAffirming {
		e.Outcome = "failure"
		e.Reason = "failed checks: " + strings.Join(failed, ", ")
		e.Data["checks"] = failedChecks(checks)
	}
	if err := s.audit.Record(ctx, e); err != nil {
		return nil, fmt.Errorf("attest: audit verdict: %w", err)
	}
	if status != store.AttestationAffirming && ref.OnMismatch == "suspend" {
		if _, err := s.lc.Transition(ctx, "system", a.ID, lifecycle.Suspend, "attestation "+rec.ID+" contraindicated: "+strings.Join(failed, ", ")); err != nil {
			var te *lifecycle.TransitionError
			if !errors.As(err, &te) { // already suspended is fine
				return nil, fmt.Errorf("attest: suspend on mismatch: %w", err)
			}
		}
	}
	s.mu.RLock()
	for _, fn := range s.listeners {
		fn(a.ID)
	}
	s.mu.RUnlock()
	return res, nil
}

// List returns the agent's verdicts, newest first.
func (s *Service) List(ctx context.Context, agentID string, limit int) ([]Result, error) {
	recs, err := s.st.ListAttestations(ctx, agentID, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(recs))
	for i, r := range recs {
		out[i].AttestationResult = r
		_ = json.Unmarshal(r.Checks, &out[i].Checks)
		_ = json.Unmarshal(r.Measurements, &out[i].Measurements)
	}
	return out, nil
}

// consumeNonce checks and burns the nonce. It returns an error only when the store
// failed, so that an outage never becomes a contraindicated verdict.
func (s *Service) consumeNonce(ctx context.Context, a *store.Agent, nonce string, now time.Time) ([]byte, Check, error) {
	c := Check{Name: "nonce", Outcome: Fail}
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 32 {
		c.Detail = "nonce is not base64url (no padding) of 32 bytes from POST /v1/attestations/challenge"
		return nil, c, nil
	}
	h := sha256.Sum256(b)
	ch, err := s.st.ConsumeChallenge(ctx, h[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.Detail = "nonce was never issued or was already used"
	case err != nil:
		return nil, c, fmt.Errorf("attest: consume challenge: %w", err)
	case subtle.ConstantTimeCompare([]byte(ch.ClientID), []byte(a.ClientID)) != 1:
		c.Detail = "nonce was issued to another client"
	case !now.Before(ch.ExpiresAt):
		c.Detail = "nonce expired at " + ch.ExpiresAt.Format(time.RFC3339)
	default:
		c.Outcome = Pass
		return b, c, nil
	}
	return b, c, nil
}

func digestCheck(name, want, got string) Check {
	if want == "" {
		return Check{Name: name, Outcome: Skipped, Actual: got, Detail: "no reference value registered"}
	}
	c := Check{Name: name, Expected: want, Actual: got, Outcome: Pass}
	if got == "" {
		c.Outcome, c.Detail = Fail, "not measured"
	} else if subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		c.Outcome, c.Detail = Fail, "measured digest differs from the reference value"
	}
	return c
}

// QualifyingData is what a TPM quote must carry as extraData:
// SHA-256(nonce bytes ‖ JCS(measurements)).
func QualifyingData(nonce, canonicalMeasurements []byte) []byte {
	h := sha256.New()
	h.Write(nonce)
	h.Write(canonicalMeasurements)
	return h.Sum(nil)
}

func (s *Service) checkTPM(ctx context.Context, ref *lifecycle.Reference, ev *Evidence, nonce, canonical []byte) []Check {
	switch {
	case ev.TPM == nil:
		return []Check{{Name: "tpm", Outcome: Fail, Detail: "the agent's policy requires a TPM quote and the evidence has none"}}
	case s.opts.TPM == nil:
		return []Check{{Name: "tpm", Outcome: Fail, Detail: "TPM verification is not available on this server"}}
	case nonce == nil:
		return []Check{{Name: "tpm", Outcome: Fail, Detail: "no valid nonce to bind the quote to"}}
	}
	extra := QualifyingData(nonce, canonical)
	var checks []Check
	var cur *store.TPMCounters
	// The counters are read and advanced in one compare-and-swap, so two quotes
	// verified at once cannot both pass with the same clock.
	err := s.st.UpdateTPMCounters(ctx, tpmKey(ref.TPM.AKPublic), func(prev *store.TPMCounters) (*store.TPMCounters, error) {
		checks, cur = s.opts.TPM.VerifyTPM(ev.TPM, ref.TPM, extra, prev)
		for _, c := range checks {
			if c.Outcome == Fail {
				return nil, errQuoteRefused
			}
		}
		if cur == nil {
			return nil, errQuoteRefused
		}
		return cur, nil
	})
	if err != nil && !errors.Is(err, errQuoteRefused) {
		checks = append(checks, Check{Name: "tpm.counters", Outcome: Fail, Detail: "counters could not be recorded"})
	}
	return checks
}

var errQuoteRefused = errors.New("attest: quote refused")

// tpmKey names an AK in the counters table: SHA-256 of its registered public area.
func tpmKey(akPublicB64 string) string {
	h := sha256.Sum256([]byte(akPublicB64))
	return fmt.Sprintf("%x", h[:])
}

func (s *Service) checkSigstore(ref *lifecycle.Reference, ev *Evidence, m Measurements) []Check {
	if s.opts.Sigstore == nil {
		return []Check{{Name: "sigstore", Outcome: Fail, Detail: "Sigstore verification is not configured on this server"}}
	}
	if len(ev.SigstoreBundles) == 0 {
		return []Check{{Name: "sigstore", Outcome: Fail, Detail: "the agent's policy requires Sigstore signatures and the evidence has no bundle"}}
	}
	proven, checks := s.opts.Sigstore.VerifyBundles(ev.SigstoreBundles, ref.Sigstore)
	// Each measurement the policy requires to be signed must be covered by a valid
	// bundle from an allowed signer (by default the model alone).
	measured := map[string]string{"model_digest": m.ModelDigest, "prompt_digest": m.PromptDigest, "tool_manifest_digest": m.ToolManifestDigest}
	for _, name := range ref.Required() {
		d := measured[name]
		c := Check{Name: "sigstore." + strings.TrimSuffix(name, "_digest") + "_signed", Expected: d, Outcome: Pass}
		switch {
		case d == "":
			c.Outcome, c.Detail = Fail, "the policy requires "+name+" to be signed and the evidence does not measure it"
		case !proven[d]:
			c.Outcome, c.Detail = Fail, "no valid bundle from an allowed signer covers the measured "+name
		}
		checks = append(checks, c)
	}
	return checks
}

func failedChecks(checks []Check) []map[string]string {
	var out []map[string]string
	for _, c := range checks {
		if c.Outcome == Fail {
			out = append(out, map[string]string{"name": c.Name, "expected": c.Expected, "actual": c.Actual, "detail": c.Detail})
		}
	}
	return out
}

// sign returns the verdict as a JWT in the spirit of the IETF RATS EAR format.
func (s *Service) sign(r *Result, nonce string) (string, error) {
	claims := map[string]any{
		"iss": s.opts.Issuer, "sub": r.AgentID, "iat": r.IssuedAt.Unix(), "exp": r.ExpiresAt.Unix(),
		"jti": r.ID, "eat_nonce": nonce, "eat_profile": "tag:lanyard.dev,2026:attestation",
		"ear.status": r.Status, "host": r.Host,
		"measurements": r.Measurements,
	}
	b, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return s.keys.Sign("ES256", "JWT", b)
}

// newID returns "att_" + a time-ordered random id (sortable: the newest sorts last).
func newID() string {
	var b [16]byte
	now := uint64(time.Now().UnixNano())
	for i := 0; i < 8; i++ {
		b[i] = byte(now >> (56 - 8*i))
	}
	_, _ = rand.Read(b[8:])
	return "att_" + fmt.Sprintf("%x", b[:])
}
