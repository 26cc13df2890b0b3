package federation

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/lanyardhq/lanyard/internal/store"
)

// MaxTokenBytes bounds an external token before any parsing.
const MaxTokenBytes = 16 << 10

// Error is a refused external token: Reason is a stable code for metrics and the audit
// log, Detail the text the client sees, Cause (if any) stays in the logs.
type Error struct {
	Reason string
	Detail string
	Cause  error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return "federation: " + e.Detail + ": " + e.Cause.Error()
	}
	return "federation: " + e.Detail
}

func (e *Error) Unwrap() error { return e.Cause }

func refuse(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Claims are the verified claims of an external token that Lanyard uses.
type Claims struct {
	Issuer   string
	Kind     string
	Subject  string
	Audience []string
	Expiry   time.Time
	// NotBefore and IssuedAt are zero when absent.
	NotBefore time.Time
	IssuedAt  time.Time
	// ID identifies the token for the replay cache: jti, else Entra's uti, else a hash
	// of the signature (so a token without an id is still single-use).
	ID string
	// Entra: tenant, object id, client (azp in v2, appid in v1), idtyp and ver.
	TenantID string
	ObjectID string
	ClientID string
	IDType   string
	Version  string
}

type rawClaims struct {
	Issuer    string               `json:"iss"`
	Subject   string               `json:"sub"`
	Audience  josejwt.Audience     `json:"aud"`
	Expiry    *josejwt.NumericDate `json:"exp"`
	NotBefore *josejwt.NumericDate `json:"nbf"`
	IssuedAt  *josejwt.NumericDate `json:"iat"`
	JTI       string               `json:"jti"`
	UTI       string               `json:"uti"`
	TID       string               `json:"tid"`
	OID       string               `json:"oid"`
	AZP       string               `json:"azp"`
	AppID     string               `json:"appid"`
	IDTyp     string               `json:"idtyp"`
	Ver       string               `json:"ver"`
}

// PeekIssuer returns the unverified iss of a compact JWS, or "" when there is none.
// Callers use it only to choose how to verify the token.
func PeekIssuer(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(raw) > MaxTokenBytes {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Issuer
}

// Verify checks raw is a token of a trusted issuer, signed with one of its current keys
// by an allowed algorithm, within its validity period (with leeway), and for Entra
// issuers consistent with the tenant and version of the issuer. It does not check the
// subject, audience or replay: see Match and the caller's replay cache.
func (s *Service) Verify(ctx context.Context, raw string, now time.Time) (*Claims, error) {
	if len(raw) > MaxTokenBytes {
		return nil, refuse("federated_malformed", "the external token is larger than %d bytes", MaxTokenBytes)
	}
	hdr, err := header(raw)
	if err != nil {
		return nil, err
	}
	iss := PeekIssuer(raw)
	st := s.issuer(iss)
	if st == nil {
		return nil, refuse("issuer_not_trusted", "issuer %q is not a trusted federation issuer", clip(iss))
	}
	// The allow-list is checked before any key is looked at.
	if !slices.Contains(st.cfg.Algs, hdr.Alg) {
		return nil, refuse("federated_alg", "alg %q is not allowed for issuer %s (allowed: %s)", clip(hdr.Alg), iss, strings.Join(st.cfg.Algs, ", "))
	}
	algs := make([]jose.SignatureAlgorithm, len(st.cfg.Algs))
	for i, a := range st.cfg.Algs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	jws, perr := jose.ParseSignedCompact(raw, algs)
	if perr != nil {
		return nil, &Error{Reason: "federated_malformed", Detail: "the external token is not a valid signed JWT", Cause: perr}
	}
	key, kerr := st.keys.key(ctx, hdr.Kid, hdr.Alg, now)
	switch {
	case errors.Is(kerr, errJWKSUnavailable):
		return nil, &Error{Reason: "federated_jwks_unavailable", Detail: fmt.Sprintf("kid %q is not among the cached keys of issuer %s and its JWKS could not be fetched; try again later", clip(hdr.Kid), iss), Cause: kerr}
	case errors.Is(kerr, errUnknownKID):
		return nil, refuse("federated_unknown_kid", "kid %q is not in the JWKS of issuer %s", clip(hdr.Kid), iss)
	case kerr != nil:
		return nil, &Error{Reason: "federated_key", Detail: strings.TrimPrefix(kerr.Error(), "federation: "), Cause: kerr}
	}
	payload, verr := jws.Verify(key.Key)
	if verr != nil {
		return nil, &Error{Reason: "federated_bad_signature", Detail: fmt.Sprintf("the external token's signature does not verify with key %q of issuer %s", clip(key.KeyID), iss), Cause: verr}
	}
	var rc rawClaims
	if err := json.Unmarshal(payload, &rc); err != nil {
		return nil, &Error{Reason: "federated_malformed", Detail: "the external token's claims are malformed", Cause: err}
	}
	if rc.Issuer != iss {
		// PeekIssuer and encoding/json disagree only on duplicate keys: refuse.
		return nil, refuse("federated_malformed", "the external token's iss is ambiguous")
	}
	c := &Claims{
		Issuer: iss, Kind: st.cfg.Kind, Subject: rc.Subject, Audience: rc.Audience,
		TenantID: rc.TID, ObjectID: rc.OID, IDType: rc.IDTyp, Version: rc.Ver, ID: rc.JTI,
	}
	if c.ClientID = rc.AZP; c.ClientID == "" {
		c.ClientID = rc.AppID
	}
	if c.ID == "" {
		c.ID = rc.UTI
	}
	if c.ID == "" {
		sum := sha256.Sum256(jws.Signatures[0].Signature)
		c.ID = "sig:" + base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if len(c.ID) > 256 {
		return nil, refuse("federated_malformed", "the external token's jti is longer than 256 bytes")
	}
	leeway := s.opts.Leeway
	switch {
	case rc.Expiry == nil:
		return nil, refuse("federated_no_exp", "the external token has no exp")
	case now.After(rc.Expiry.Time().Add(leeway)):
		return nil, refuse("federated_expired", "the external token expired at %s", rc.Expiry.Time().UTC().Format(time.RFC3339))
	case rc.NotBefore != nil && rc.NotBefore.Time().After(now.Add(leeway)):
		return nil, refuse("federated_not_yet_valid", "the external token is not valid before %s", rc.NotBefore.Time().UTC().Format(time.RFC3339))
	case rc.IssuedAt != nil && rc.IssuedAt.Time().After(now.Add(leeway)):
		return nil, refuse("federated_iat_future", "the external token's iat is in the future")
	}
	c.Expiry = rc.Expiry.Time()
	if rc.NotBefore != nil {
		c.NotBefore = rc.NotBefore.Time()
	}
	if rc.IssuedAt != nil {
		c.IssuedAt = rc.IssuedAt.Time()
	}
	if c.Subject == "" {
		return nil, refuse("federated_subject", "the external token has no sub")
	}
	if st.cfg.Kind == KindEntra {
		switch {
		case rc.TID != st.tenant:
			return nil, refuse("federated_tenant", "the token's tid %q is not the tenant %q of issuer %s", clip(rc.TID), st.tenant, iss)
		case rc.Ver != "" && rc.Ver != entraVersion(iss):
			return nil, refuse("federated_version", "the token's ver %q does not match issuer %s (a v%s issuer)", clip(rc.Ver), iss, entraVersion(iss))
		case rc.UTI == "" && rc.JTI == "":
			return nil, refuse("federated_no_id", "the Entra ID token has no uti")
		}
	}
	return c, nil
}

type jwsHeader struct {
	Alg  string `json:"alg"`
	Kid  string `json:"kid"`
	Crit []any  `json:"crit"`
}

func header(raw string) (*jwsHeader, error) {
	dot := strings.IndexByte(raw, '.')
	if dot <= 0 || strings.Count(raw, ".") != 2 {
		return nil, refuse("federated_malformed", "the external token is not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(raw[:dot])
	if err != nil {
		return nil, refuse("federated_malformed", "the external token's header is not base64url")
	}
	var h jwsHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, refuse("federated_malformed", "the external token's header is not a JSON object")
	}
	if h.Crit != nil {
		return nil, refuse("federated_malformed", "the external token has crit header parameters, which are not supported")
	}
	return &h, nil
}

// Match returns the first of creds (federated credentials of one agent) that c
// satisfies: issuer, subject (and for Entra the object id), audience, idtyp=app when
// required, and azp/appid when the credential lists client ids. When none does, the
// error names the first check that failed for the credential that came closest.
func Match(c *Claims, creds []store.Credential) (*store.Credential, error) {
	var best *Error
	bestDepth := -1
	for i := range creds {
		cr := &creds[i]
		if cr.Type != store.CredentialFederated || cr.Issuer != c.Issuer {
			continue
		}
		depth, err := matchOne(c, cr)
		if err == nil {
			return cr, nil
		}
		if depth > bestDepth {
			best, bestDepth = err, depth
		}
	}
	if best == nil {
		return nil, refuse("federated_not_registered", "the agent has no federated credential for issuer %s", c.Issuer)
	}
	return nil, best
}

func matchOne(c *Claims, cr *store.Credential) (int, *Error) {
	if c.Subject != cr.Subject {
		return 0, refuse("federated_subject", "the token's sub %q is not a registered subject of this agent for issuer %s", clip(c.Subject), c.Issuer)
	}
	if c.Kind == KindEntra && c.ObjectID != cr.Subject {
		return 1, refuse("federated_subject", "the token's oid %q is not the registered subject %q", clip(c.ObjectID), cr.Subject)
	}
	if !slices.Contains(c.Audience, cr.Audience) {
		return 2, refuse("federated_audience", "the token's aud %q does not contain the registered audience %q", clip(strings.Join(c.Audience, " ")), cr.Audience)
	}
	if cr.RequireAppToken && c.IDType != "app" {
		return 3, refuse("federated_app_token", "an app-only token is required (idtyp \"app\"), the token's idtyp is %q", clip(c.IDType))
	}
	if len(cr.AllowedClientIDs) > 0 && !slices.Contains(cr.AllowedClientIDs, c.ClientID) {
		return 4, refuse("federated_client_id", "the token's azp/appid %q is not allowed for this credential", clip(c.ClientID))
	}
	return 5, nil
}
