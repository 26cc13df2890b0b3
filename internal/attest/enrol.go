package attest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/lanyardhq/lanyard/internal/attest/tpm"
	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Enrolment of a TPM attestation key (AK) by credential activation, as SPIRE's TPM node
// attestor and go-attestation do it:
//
//  1. Start: the enroller sends the endorsement key's TPM2B_PUBLIC (and its certificate
//     from the TPM's NV storage, if any) and the AK's TPM2B_PUBLIC. The server checks the
//     AK's attributes and the EK certificate, seals a random secret to the EK and the AK's
//     Name (TPM2_MakeCredential) and keeps a single-use pending enrolment.
//  2. Finish: the enroller's TPM recovers the secret with TPM2_ActivateCredential, which
//     it only does if a key of that Name is loaded in the TPM holding that EK, and sends
//     it back. The server compares it in constant time and records the enrolled AK.
//
// What it proves: the AK is a restricted signing key resident in the same TPM as the EK
// (and, with an EK CA bundle, that this TPM is a genuine one from a trusted
// manufacturer). What it does not: that the host is otherwise trustworthy (that is what
// the PCR values in each quote are for), nor who is allowed to run agents on it.

// Enrolment check failures, as EnrolmentError.Kind values (HTTP problem types).
const (
	EnrolMalformed        = "malformed-enrolment"
	EnrolBadAK            = "bad-attestation-key"
	EnrolBadEK            = "bad-endorsement-key"
	EnrolEKCertRefused    = "ek-certificate-refused"
	EnrolNotFound         = "enrolment-not-found"
	EnrolExpired          = "enrolment-expired"
	EnrolActivationFailed = "credential-activation-failed"
)

const (
	defaultEnrolmentTTL    = 2 * time.Minute
	enrolmentSecretBytes   = 32
	auditTPMEnrolled       = "tpm.enrolled"
	auditTPMEnrolmentStart = "tpm.enrolment_started"
)

// EnrolmentError is a refused enrolment step: Kind says which check failed (one of the
// Enrol* constants) and Detail, safe to show the caller, says how.
type EnrolmentError struct {
	Kind, Detail string
}

func (e *EnrolmentError) Error() string { return "attest: enrolment: " + e.Kind + ": " + e.Detail }

// EnrolmentStore is what enrolment needs from the database.
type EnrolmentStore interface {
	store.TPMEnrolments
}

// EnrolmentOptions tune enrolment.
type EnrolmentOptions struct {
	// TTL is how long a pending enrolment waits for its activated secret. Default 2m.
	TTL time.Duration
	// EKRoots, when set, are the manufacturer CAs an EK certificate must chain to, and an
	// enrolment without a valid EK certificate is refused. Nil: EK certificates are
	// checked against the EK but not for who issued them.
	EKRoots *x509.CertPool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Enrolments runs TPM attestation key enrolment.
type Enrolments struct {
	st    EnrolmentStore
	audit Auditor
	opts  EnrolmentOptions
}

// NewEnrolments returns an enrolment service.
func NewEnrolments(st EnrolmentStore, aud Auditor, opts EnrolmentOptions) *Enrolments {
	if opts.TTL <= 0 {
		opts.TTL = defaultEnrolmentTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Enrolments{st: st, audit: aud, opts: opts}
}

// EnrolRequest starts an enrolment. All members are raw bytes (decoded from base64 by
// the HTTP layer).
type EnrolRequest struct {
	EKPublic      []byte // TPM2B_PUBLIC of the endorsement key
	EKCertificate []byte // DER X.509 certificate of the EK; optional
	AKPublic      []byte // TPM2B_PUBLIC of the attestation key
}

// EnrolChallenge is the credential the enroller's TPM must activate.
type EnrolChallenge struct {
	ID              string
	AKName          string // hex
	CredentialBlob  []byte // TPM2B_ID_OBJECT contents (TPMS_ID_OBJECT)
	EncryptedSecret []byte // TPM2B_ENCRYPTED_SECRET contents
	ExpiresAt       time.Time
}

// Start checks the keys and returns the credential to activate. caller identifies who
// asks (only the same caller may finish); actor is recorded in the audit log.
func (e *Enrolments) Start(ctx context.Context, caller, actor string, req EnrolRequest) (*EnrolChallenge, error) {
	refuse := func(kind, detail string, data map[string]any) error {
		return e.refused(ctx, actor, &EnrolmentError{Kind: kind, Detail: detail}, data)
	}
	name, err := tpm.CheckAKPublic(req.AKPublic)
	if err != nil {
		return nil, refuse(EnrolBadAK, err.Error(), nil)
	}
	akName := hex.EncodeToString(name)
	data := map[string]any{"ak_name": akName}
	ekKey, err := tpm.EKPublicKey(req.EKPublic)
	if err != nil {
		return nil, refuse(EnrolBadEK, err.Error(), data)
	}
	spki, err := x509.MarshalPKIXPublicKey(ekKey)
	if err != nil {
		return nil, refuse(EnrolBadEK, "EK public key cannot be encoded: "+err.Error(), data)
	}
	ekHash := sha256.Sum256(spki)
	data["ek_public_hash"] = hex.EncodeToString(ekHash[:])
	status, err := e.checkEKCertificate(req.EKCertificate, ekKey)
	if err != nil {
		return nil, refuse(EnrolEKCertRefused, err.Error(), data)
	}

	secret := make([]byte, enrolmentSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	blob, encSecret, err := tpm.MakeCredential(req.EKPublic, name, secret)
	if err != nil {
		return nil, refuse(EnrolBadEK, err.Error(), data)
	}
	sh := sha256.Sum256(secret)
	// Expired challenges are never answered; clear them as new ones come.
	if _, err := e.st.PurgePendingTPMEnrolments(ctx, e.opts.Now()); err != nil {
		return nil, fmt.Errorf("attest: purge pending enrolments: %w", err)
	}
	p := &store.PendingTPMEnrolment{
		ID: "tpe_" + randomHex(16), Caller: caller, AKName: akName, AKPublic: req.AKPublic,
		EKPublicHash: hex.EncodeToString(ekHash[:]), EKCertStatus: status, SecretHash: sh[:],
		ExpiresAt: e.opts.Now().UTC().Add(e.opts.TTL).Truncate(time.Microsecond),
	}
	if err := e.st.CreatePendingTPMEnrolment(ctx, p); err != nil {
		return nil, fmt.Errorf("attest: store pending enrolment: %w", err)
	}
	data["enrolment_id"], data["ek_cert_status"] = p.ID, status
	if err := e.audit.Record(ctx, audit.Event{Type: auditTPMEnrolmentStart, Actor: actor, Outcome: "success",
		RequestID: requestid.From(ctx), Data: data}); err != nil {
		return nil, fmt.Errorf("attest: audit enrolment: %w", err)
	}
	return &EnrolChallenge{ID: p.ID, AKName: akName, CredentialBlob: blob, EncryptedSecret: encSecret, ExpiresAt: p.ExpiresAt}, nil
}

// Finish checks the secret the enroller's TPM recovered and records the enrolled AK.
// The pending enrolment is used up whatever the outcome: a wrong secret means starting
// again, so the secret cannot be guessed.
func (e *Enrolments) Finish(ctx context.Context, caller, actor, id string, secret []byte) (*store.TPMEnrolment, error) {
	data := map[string]any{"enrolment_id": id}
	refuse := func(kind, detail string) error {
		return e.refused(ctx, actor, &EnrolmentError{Kind: kind, Detail: detail}, data)
	}
	p, err := e.st.ConsumePendingTPMEnrolment(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(EnrolNotFound, "no pending enrolment has this id: it was never started, was already answered, or expired")
	}
	if err != nil {
		return nil, fmt.Errorf("attest: consume pending enrolment: %w", err)
	}
	data["ak_name"] = p.AKName
	if subtle.ConstantTimeCompare([]byte(p.Caller), []byte(caller)) != 1 {
		return nil, refuse(EnrolNotFound, "no pending enrolment has this id for this caller")
	}
	if !e.opts.Now().Before(p.ExpiresAt) {
		return nil, refuse(EnrolExpired, "the enrolment expired at "+p.ExpiresAt.Format(time.RFC3339)+"; start again")
	}
	sh := sha256.Sum256(secret)
	if len(secret) != enrolmentSecretBytes || subtle.ConstantTimeCompare(sh[:], p.SecretHash) != 1 {
		return nil, refuse(EnrolActivationFailed, "the secret is not the one sealed to the EK and AK: the AK is not in the TPM that holds the EK")
	}
	rec := &store.TPMEnrolment{AKName: p.AKName, AKPublic: p.AKPublic, EKPublicHash: p.EKPublicHash,
		EKCertStatus: p.EKCertStatus, EnrolledBy: actor, EnrolledAt: e.opts.Now().UTC().Truncate(time.Microsecond)}
	if err := e.st.PutTPMEnrolment(ctx, rec); err != nil {
		return nil, fmt.Errorf("attest: store enrolment: %w", err)
	}
	data["ek_public_hash"], data["ek_cert_status"] = p.EKPublicHash, p.EKCertStatus
	if err := e.audit.Record(ctx, audit.Event{Type: auditTPMEnrolled, Actor: actor, Outcome: "success",
		RequestID: requestid.From(ctx), Data: data}); err != nil {
		return nil, fmt.Errorf("attest: audit enrolment: %w", err)
	}
	return rec, nil
}

// AKEnrolled reports whether the AK whose TPM2B_PUBLIC is akPublic completed enrolment.
func (e *Enrolments) AKEnrolled(ctx context.Context, akPublic []byte) (bool, error) {
	name, err := tpm.AKName(akPublic)
	if err != nil {
		return false, nil
	}
	rec, err := e.st.GetTPMEnrolment(ctx, hex.EncodeToString(name))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(rec.AKPublic, akPublic) == 1, nil
}

// Get returns the enrolment of the AK with the given hex Name.
func (e *Enrolments) Get(ctx context.Context, akName string) (*store.TPMEnrolment, error) {
	return e.st.GetTPMEnrolment(ctx, akName)
}

func (e *Enrolments) refused(ctx context.Context, actor string, ee *EnrolmentError, data map[string]any) error {
	if data == nil {
		data = map[string]any{}
	}
	data["check"] = ee.Kind
	if err := e.audit.Record(ctx, audit.Event{Type: auditTPMEnrolled, Actor: actor, Outcome: "failure",
		Reason: ee.Kind + ": " + ee.Detail, RequestID: requestid.From(ctx), Data: data}); err != nil {
		return fmt.Errorf("attest: audit enrolment refusal: %w", err)
	}
	return ee
}

// checkEKCertificate returns the EK certificate status, or why the certificate (or its
// absence) is refused.
func (e *Enrolments) checkEKCertificate(der []byte, ek any) (string, error) {
	if len(der) == 0 {
		if e.opts.EKRoots != nil {
			return "", errors.New("an EK certificate chaining to the configured manufacturer CAs is required and none was sent")
		}
		return store.EKCertAbsent, nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", fmt.Errorf("EK certificate does not parse: %v", err)
	}
	pk, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pk.Equal(ek) {
		return "", errors.New("EK certificate is for another key than the EK sent")
	}
	if e.opts.EKRoots == nil {
		return store.EKCertUnverified, nil
	}
	// EK certificates carry the TPM's manufacturer, model and version as a directoryName
	// in a critical subjectAltName, which Go does not process (TCG EK Credential Profile
	// 3.2.9): accept it, as go-attestation does.
	unhandled := cert.UnhandledCriticalExtensions[:0:0]
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSubjectAltName) {
			unhandled = append(unhandled, oid)
		}
	}
	cert.UnhandledCriticalExtensions = unhandled
	if _, err := cert.Verify(x509.VerifyOptions{Roots: e.opts.EKRoots, CurrentTime: e.opts.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", fmt.Errorf("EK certificate does not chain to the configured manufacturer CAs: %v", err)
	}
	return store.EKCertVerified, nil
}

// LoadEKRoots reads a PEM bundle of TPM manufacturer CA certificates. Every certificate
// in it is trusted as an issuer of EK certificates (roots and intermediates alike).
func LoadEKRoots(path string) (*x509.CertPool, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("attest: EK CA bundle: %w", err)
	}
	pool, n := x509.NewCertPool(), 0
	for len(b) > 0 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("attest: EK CA bundle %s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("attest: EK CA bundle %s holds no PEM certificate", path)
	}
	return pool, n, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
