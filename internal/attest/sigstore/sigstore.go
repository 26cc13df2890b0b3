// Package sigstore verifies Sigstore bundles presented as attestation evidence:
// keyless bundles (Fulcio certificate, Rekor entry, RFC 3161 timestamps) against a
// trusted_root.json, and bundles signed with a plain public key. It reports what a
// verified bundle proves: the signer, the digests of the in-toto subjects (or of the
// signed artifact for a message signature), and, for an OpenSSF model-signing v1.0
// statement, the model root digest recomputed from the signed file list.
package sigstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// MaxBundleSize is the largest bundle Verify accepts. Bundles are untrusted input.
const MaxBundleSize = 1 << 20

// MaxClockSkew is how far in the future (by Options.Now) a verified timestamp may be.
const MaxClockSkew = 10 * time.Minute

// ModelSigningPredicateType is the predicate type of the OpenSSF model-signing format v1.0.
const ModelSigningPredicateType = "https://model_signing/signature/v1.0"

const (
	intotoPayloadType = "application/vnd.in-toto+json"
	maxResources      = 1 << 16
)

// Identity is a signer allowed by an agent's policy: exact issuer and subject (SAN), or
// regular expressions when IssuerRegexp/SubjectRegexp are set. A regular expression
// must match the whole value (it is anchored), unlike cosign's unanchored matching.
// Setting both the exact value and the regular expression for one field requires both.
type Identity struct {
	Issuer, Subject, IssuerRegexp, SubjectRegexp string
}

func (id Identity) String() string {
	iss, sub := id.Issuer, id.Subject
	if id.IssuerRegexp != "" {
		iss = "~" + id.IssuerRegexp
	}
	if id.SubjectRegexp != "" {
		sub = "~" + id.SubjectRegexp
	}
	return iss + "/" + sub
}

// Resource is one entry of a model-signing predicate's resources list.
type Resource struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	Digest    string `json:"digest"`
}

// Options tune verification. The zero value is the sensible default: a keyless bundle
// must carry at least one verified observer timestamp (its transparency-log entries,
// which are then verified, or else an RFC 3161 signed timestamp), as sigstore-go
// recommends; SCTs are required when the trusted root lists CT logs.
type Options struct {
	// RequireTlog requires at least one verified transparency-log entry.
	RequireTlog bool
	// RequireTimestamp requires at least one verified RFC 3161 signed timestamp.
	RequireTimestamp bool
	// SkipSCT does not require a signed certificate timestamp in the Fulcio
	// certificate even when the trusted root lists CT logs (private Fulcio without CT).
	SkipSCT bool
	// Now is the clock used to reject timestamps from the future (MaxClockSkew);
	// time.Now when nil. Certificate validity is checked at the verified timestamps.
	Now func() time.Time
}

// Result says what a verified bundle proves.
type Result struct {
	// Signer is the certificate's issuer + SAN (empty for key-based).
	Signer Identity
	// Subjects maps sha256 hex digest → subject name, from the in-toto statement's
	// subjects (DSSE bundles), or the signed artifact's digest → "" (message signatures).
	Subjects map[string]string
	// ModelRoot is, for an OpenSSF model-signing v1.0 statement, the root digest
	// (hex) recomputed from predicate.resources in listed order; it equals the single
	// subject's sha256.
	ModelRoot string
	// Resources is the model-signing predicate's resources, when present.
	Resources []Resource
	// PredicateType is the in-toto statement's predicate type (DSSE bundles).
	PredicateType string
	// Timestamps are the verified observer times (transparency log, TSA).
	Timestamps []time.Time
}

// Verifier verifies Sigstore bundles (v0.1–v0.3 JSON) against one trust configuration.
// It is safe for concurrent use.
type Verifier struct {
	tm       root.TrustedMaterial
	keyBased bool
	now      func() time.Time
	// Selected per bundle: withTlog (log entries verified) when the bundle has log
	// entries and the trusted root lists Rekor logs, or RequireTlog; else withoutTlog.
	withTlog, withoutTlog *verify.Verifier
}

// NewVerifier takes a trusted_root.json (public-good or private Sigstore: Fulcio CAs,
// Rekor logs, TSAs, CT logs) and verifies keyless bundles.
func NewVerifier(trustedRootJSON []byte, opts Options) (*Verifier, error) {
	tr, err := root.NewTrustedRootFromJSON(trustedRootJSON)
	if err != nil {
		return nil, fmt.Errorf("sigstore: trusted root: %w", err)
	}
	return NewVerifierFromMaterial(tr, opts)
}

// NewVerifierFromMaterial is NewVerifier for trust material already loaded (a
// root.TrustedRoot, a TUF-refreshed root.LiveTrustedRoot, or a test's VirtualSigstore).
func NewVerifierFromMaterial(tm root.TrustedMaterial, opts Options) (*Verifier, error) {
	if tm == nil {
		return nil, errors.New("sigstore: no trusted material")
	}
	if len(tm.FulcioCertificateAuthorities()) == 0 {
		return nil, errors.New("sigstore: trusted root has no certificate authorities")
	}
	if opts.RequireTlog && len(tm.RekorLogs()) == 0 {
		return nil, errors.New("sigstore: transparency log required but trusted root has no Rekor logs")
	}
	if opts.RequireTimestamp && len(tm.TimestampingAuthorities()) == 0 {
		return nil, errors.New("sigstore: signed timestamp required but trusted root has no timestamp authorities")
	}
	base := []verify.VerifierOption{verify.WithObserverTimestamps(1), verify.WithoutStatementPredicate()}
	if opts.RequireTimestamp {
		base = append(base, verify.WithSignedTimestamps(1))
	}
	if len(tm.CTLogs()) > 0 && !opts.SkipSCT {
		base = append(base, verify.WithSignedCertificateTimestamps(1))
	}
	return newVerifier(tm, opts, false, base)
}

// NewKeyVerifier verifies bundles signed with a plain public key (PEM: PKIX ECDSA,
// RSA or Ed25519), no identity (key-based signing). It checks the signature alone:
// there is no trusted root, so transparency-log entries and signed timestamps in the
// bundle are not verified, and RequireTlog/RequireTimestamp are refused.
func NewKeyVerifier(publicKeyPEM []byte, opts Options) (*Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(publicKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("sigstore: public key: %w", err)
	}
	sv, err := signature.LoadDefaultVerifier(pub)
	if err != nil {
		return nil, fmt.Errorf("sigstore: public key: %w", err)
	}
	key := root.NewExpiringKey(sv, time.Time{}, time.Time{})
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return key, nil
	})
	if opts.RequireTlog || opts.RequireTimestamp {
		return nil, errors.New("sigstore: a key verifier has no trusted root: transparency logs and timestamp authorities cannot be verified")
	}
	base := []verify.VerifierOption{verify.WithNoObserverTimestamps(), verify.WithoutStatementPredicate()}
	v := &Verifier{keyBased: true, now: clock(opts)}
	v.withoutTlog, err = verify.NewVerifier(tm, base...)
	if err != nil {
		return nil, fmt.Errorf("sigstore: %w", err)
	}
	v.withTlog = v.withoutTlog
	return v, nil
}

func clock(opts Options) func() time.Time {
	if opts.Now != nil {
		return opts.Now
	}
	return time.Now
}

func newVerifier(tm root.TrustedMaterial, opts Options, keyBased bool, base []verify.VerifierOption) (*Verifier, error) {
	v := &Verifier{tm: tm, keyBased: keyBased, now: clock(opts)}
	var err error
	if len(tm.RekorLogs()) > 0 {
		v.withTlog, err = verify.NewVerifier(tm, append(base[:len(base):len(base)], verify.WithTransparencyLog(1))...)
		if err != nil {
			return nil, fmt.Errorf("sigstore: %w", err)
		}
	}
	if !opts.RequireTlog {
		v.withoutTlog, err = verify.NewVerifier(tm, base...)
		if err != nil {
			return nil, fmt.Errorf("sigstore: %w", err)
		}
	}
	return v, nil
}

// Verify checks the bundle's signature, certificate chain, transparency-log / timestamp
// evidence, and that the signer matches one of ids (keyless; ids may be empty only for
// a key verifier, which ignores them). Message-signature bundles (not DSSE) prove the
// digest of the signed artifact: it is returned in Subjects with name "".
func (v *Verifier) Verify(bundleJSON []byte, ids []Identity) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("sigstore: malformed bundle (verifier panicked: %v)", r)
		}
	}()
	if len(bundleJSON) > MaxBundleSize {
		return nil, fmt.Errorf("sigstore: bundle is %d bytes, more than the %d allowed", len(bundleJSON), MaxBundleSize)
	}
	if !v.keyBased {
		if len(ids) == 0 {
			return nil, errors.New("sigstore: no allowed signer identities configured")
		}
		for _, id := range ids {
			if _, err := id.compile(); err != nil {
				return nil, err
			}
		}
	}

	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return nil, fmt.Errorf("sigstore: bundle: %w", err)
	}

	// A bundle's log entries are verified whenever the trusted root lists Rekor logs;
	// without entries (or without logs to check them against) a signed timestamp must do.
	sv := v.withoutTlog
	if (len(b.GetVerificationMaterial().GetTlogEntries()) > 0 && v.withTlog != nil) || sv == nil {
		sv = v.withTlog
	}
	if sv == nil {
		return nil, errors.New("sigstore: verifier is not initialised")
	}

	policy, digest, err := artifactPolicy(&b, v.keyBased)
	if err != nil {
		return nil, err
	}
	vr, err := sv.Verify(&b, policy)
	if err != nil {
		err = describe(err)
		if unknown := v.unknownLogs(&b); unknown != "" && strings.HasPrefix(err.Error(), "sigstore: transparency log:") {
			err = fmt.Errorf("%w (entries from logs the trusted root does not list: %s)", err, unknown)
		}
		return nil, err
	}

	res = &Result{Subjects: map[string]string{}}
	for _, ts := range vr.VerifiedTimestamps {
		if ts.Type == "CurrentTime" {
			continue
		}
		if ts.Timestamp.After(v.now().Add(MaxClockSkew)) {
			return nil, fmt.Errorf("sigstore: %s timestamp %s is in the future", ts.Type, ts.Timestamp.UTC().Format(time.RFC3339))
		}
		res.Timestamps = append(res.Timestamps, ts.Timestamp)
	}

	if v.keyBased {
		if vr.Signature == nil || vr.Signature.Certificate != nil {
			return nil, errors.New("sigstore: bundle is signed with a certificate, expected the configured key")
		}
	} else {
		if vr.Signature == nil || vr.Signature.Certificate == nil {
			return nil, errors.New("sigstore: bundle is signed with a key, expected a Fulcio certificate")
		}
		c := vr.Signature.Certificate
		res.Signer = Identity{Issuer: c.Issuer, Subject: c.SubjectAlternativeName}
		if err := matchIdentity(res.Signer, ids); err != nil {
			return nil, err
		}
	}

	if digest != nil {
		res.Subjects[hex.EncodeToString(digest)] = ""
		return res, nil
	}
	env, err := b.Envelope()
	if err != nil {
		return nil, fmt.Errorf("sigstore: bundle: %w", err)
	}
	payload, err := env.RawEnvelope().DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("sigstore: DSSE payload: %w", err)
	}
	if err := readStatement(payload, res); err != nil {
		return nil, err
	}
	return res, nil
}

// unknownLogs lists the hex log IDs of the bundle's tlog entries that the trusted
// root does not know, which sigstore-go skips silently.
func (v *Verifier) unknownLogs(b *bundle.Bundle) string {
	if v.tm == nil {
		return ""
	}
	known := v.tm.RekorLogs()
	var ids []string
	for _, e := range b.GetVerificationMaterial().GetTlogEntries() {
		id := hex.EncodeToString(e.GetLogId().GetKeyId())
		if _, ok := known[id]; !ok {
			ids = append(ids, id)
		}
	}
	return strings.Join(ids, ", ")
}

// artifactPolicy returns the sigstore-go policy; for a message signature it also
// returns the SHA-256 digest the signature covers.
func artifactPolicy(b *bundle.Bundle, keyBased bool) (verify.PolicyBuilder, []byte, error) {
	var idOpt verify.PolicyOption
	if keyBased {
		idOpt = verify.WithKey()
	} else {
		// Identities are matched by matchIdentity, which names the signer on failure.
		idOpt = verify.WithoutIdentitiesUnsafe()
	}
	switch c := b.Content.(type) {
	case *protobundle.Bundle_DsseEnvelope:
		if pt := c.DsseEnvelope.GetPayloadType(); pt != intotoPayloadType {
			return verify.PolicyBuilder{}, nil, fmt.Errorf("sigstore: DSSE payload type %q is not %s", pt, intotoPayloadType)
		}
		return verify.NewPolicy(verify.WithoutArtifactUnsafe(), idOpt), nil, nil
	case *protobundle.Bundle_MessageSignature:
		md := c.MessageSignature.GetMessageDigest()
		if md.GetAlgorithm().String() != "SHA2_256" {
			return verify.PolicyBuilder{}, nil, fmt.Errorf("sigstore: message digest algorithm %s is not supported (want SHA2_256)", md.GetAlgorithm())
		}
		if len(md.GetDigest()) != sha256.Size {
			return verify.PolicyBuilder{}, nil, fmt.Errorf("sigstore: message digest is %d bytes, want %d", len(md.GetDigest()), sha256.Size)
		}
		d := bytes.Clone(md.GetDigest())
		return verify.NewPolicy(verify.WithArtifactDigest("sha256", d), idOpt), d, nil
	}
	return verify.PolicyBuilder{}, nil, errors.New("sigstore: bundle has neither a DSSE envelope nor a message signature")
}

// describe turns sigstore-go's error into one that says which check failed.
func describe(err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "failed to verify signature"):
		return fmt.Errorf("sigstore: bundle signature: %w", err)
	case strings.HasPrefix(msg, "failed to verify log inclusion"):
		return fmt.Errorf("sigstore: transparency log: %w", err)
	case strings.HasPrefix(msg, "failed to verify timestamps"):
		return fmt.Errorf("sigstore: timestamps: %w", err)
	case strings.HasPrefix(msg, "failed to verify leaf certificate"), strings.HasPrefix(msg, "failed to summarize certificate"):
		return fmt.Errorf("sigstore: certificate chain: %w", err)
	case strings.HasPrefix(msg, "failed to verify signed certificate timestamp"):
		return fmt.Errorf("sigstore: certificate transparency: %w", err)
	case strings.HasPrefix(msg, "failed to get signature verifier"):
		return fmt.Errorf("sigstore: verification key: %w", err)
	}
	return fmt.Errorf("sigstore: %w", err)
}

type compiledIdentity struct {
	issuer, subject *regexp.Regexp
}

func (id Identity) compile() (compiledIdentity, error) {
	var c compiledIdentity
	var err error
	if id.Issuer == "" && id.IssuerRegexp == "" {
		return c, fmt.Errorf("sigstore: identity %s has no issuer", id)
	}
	if id.Subject == "" && id.SubjectRegexp == "" {
		return c, fmt.Errorf("sigstore: identity %s has no subject", id)
	}
	if id.IssuerRegexp != "" {
		if c.issuer, err = regexp.Compile(`^(?:` + id.IssuerRegexp + `)$`); err != nil {
			return c, fmt.Errorf("sigstore: identity issuer regexp: %w", err)
		}
	}
	if id.SubjectRegexp != "" {
		if c.subject, err = regexp.Compile(`^(?:` + id.SubjectRegexp + `)$`); err != nil {
			return c, fmt.Errorf("sigstore: identity subject regexp: %w", err)
		}
	}
	return c, nil
}

func (id Identity) matches(signer Identity) bool {
	c, err := id.compile()
	if err != nil {
		return false
	}
	if id.Issuer != "" && id.Issuer != signer.Issuer {
		return false
	}
	if id.Subject != "" && id.Subject != signer.Subject {
		return false
	}
	if c.issuer != nil && !c.issuer.MatchString(signer.Issuer) {
		return false
	}
	if c.subject != nil && !c.subject.MatchString(signer.Subject) {
		return false
	}
	return true
}

func matchIdentity(signer Identity, ids []Identity) error {
	for _, id := range ids {
		if id.matches(signer) {
			return nil
		}
	}
	want := make([]string, len(ids))
	for i, id := range ids {
		want[i] = id.String()
	}
	return fmt.Errorf("sigstore: signer %s/%s is not an allowed identity (want %s)", signer.Issuer, signer.Subject, strings.Join(want, " or "))
}

type statement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

func readStatement(payload []byte, res *Result) error {
	var st statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return fmt.Errorf("sigstore: in-toto statement: %w", err)
	}
	switch st.Type {
	case "https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1":
	default:
		return fmt.Errorf("sigstore: in-toto statement type %q is not supported", st.Type)
	}
	res.PredicateType = st.PredicateType
	for i, s := range st.Subject {
		d, ok := s.Digest["sha256"]
		if !ok {
			continue
		}
		if !isSHA256Hex(d) {
			return fmt.Errorf("sigstore: subject %d (%q) sha256 digest %q is not 64 lowercase hex digits", i, s.Name, d)
		}
		if prev, dup := res.Subjects[d]; dup && prev != s.Name {
			return fmt.Errorf("sigstore: subjects %q and %q have the same digest %s", prev, s.Name, d)
		}
		res.Subjects[d] = s.Name
	}
	if st.PredicateType != ModelSigningPredicateType {
		return nil
	}
	return readModelSigning(&st, res)
}

func readModelSigning(st *statement, res *Result) error {
	if len(st.Subject) != 1 {
		return fmt.Errorf("sigstore: model-signing statement has %d subjects, want 1", len(st.Subject))
	}
	want, ok := st.Subject[0].Digest["sha256"]
	if !ok || !isSHA256Hex(want) {
		return errors.New("sigstore: model-signing subject has no sha256 digest")
	}
	var pred struct {
		Resources []Resource `json:"resources"`
	}
	if err := json.Unmarshal(st.Predicate, &pred); err != nil {
		return fmt.Errorf("sigstore: model-signing predicate: %w", err)
	}
	if len(pred.Resources) == 0 {
		return errors.New("sigstore: model-signing predicate lists no resources")
	}
	if len(pred.Resources) > maxResources {
		return fmt.Errorf("sigstore: model-signing predicate lists %d resources, more than %d", len(pred.Resources), maxResources)
	}
	h := sha256.New()
	raw := make([]byte, sha256.Size)
	for i, r := range pred.Resources {
		if r.Algorithm != "sha256" {
			return fmt.Errorf("sigstore: model-signing resource %d (%q) algorithm %q is not supported (want sha256)", i, r.Name, r.Algorithm)
		}
		if !isSHA256Hex(r.Digest) {
			return fmt.Errorf("sigstore: model-signing resource %d (%q) digest %q is not 64 lowercase hex digits", i, r.Name, r.Digest)
		}
		hex.Decode(raw, []byte(r.Digest))
		h.Write(raw)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		return fmt.Errorf("sigstore: model-signing root %s differs from subject digest %s", got, want)
	}
	res.ModelRoot = got
	res.Resources = pred.Resources
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
