package lifecycle

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FieldError names one invalid field of a request.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// ValidationError lists every invalid field of a request; nothing was changed.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "lifecycle: invalid request: " + strings.Join(parts, "; ")
}

type validator struct{ fields []FieldError }

func (v *validator) add(field, format string, args ...any) {
	v.fields = append(v.fields, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return &ValidationError{Fields: v.fields}
}

// dnsLabel is the shape of agent names and namespaces (RFC 1123 label), so they are safe
// in URLs, Vault paths and Kubernetes objects alike.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (v *validator) label(field, s string) {
	switch {
	case s == "":
		v.add(field, "is required")
	case !dnsLabel.MatchString(s):
		v.add(field, "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit")
	}
}

func (v *validator) text(field, s string, required bool, max int) {
	switch {
	case s == "" && required:
		v.add(field, "is required")
	case len(s) > max:
		v.add(field, "must be at most %d bytes", max)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' }):
		v.add(field, "must not contain control characters")
	}
}

// regexp checks an optional RE2 pattern. Go's regexp runs in time linear in the input,
// so a registered pattern cannot be used to slow the verifier down.
func (v *validator) regexp(field, s string) {
	if s == "" {
		return
	}
	v.text(field, s, false, 512)
	if _, err := regexp.Compile(s); err != nil {
		v.add(field, "is not a valid RE2 regular expression: %v", err)
	}
}

// RiskLevels are the accepted risk levels, lowest first.
var RiskLevels = []string{"low", "medium", "high", "critical"}

func (v *validator) risk(field, s string) {
	for _, r := range RiskLevels {
		if s == r {
			return
		}
	}
	v.add(field, "must be one of low, medium, high, critical")
}

// scopeToken checks RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
			return false
		}
	}
	return true
}

func (v *validator) scopes(field string, list []string) {
	if len(list) > 100 {
		v.add(field, "must hold at most 100 scopes")
		return
	}
	seen := map[string]bool{}
	for i, s := range list {
		if !validScopeToken(s) {
			v.add(fmt.Sprintf("%s[%d]", field, i), "%q is not a valid scope token (RFC 6749 §3.3)", s)
		} else if seen[s] {
			v.add(fmt.Sprintf("%s[%d]", field, i), "%q is listed twice", s)
		}
		seen[s] = true
	}
}

// resources checks RFC 8707 §2: absolute URIs without a fragment.
func (v *validator) resources(field string, list []string) {
	if len(list) > 100 {
		v.add(field, "must hold at most 100 resources")
		return
	}
	seen := map[string]bool{}
	for i, s := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		u, err := url.Parse(s)
		switch {
		case err != nil || !u.IsAbs() || len(s) > 2048:
			v.add(f, "%q must be an absolute URI", s)
		case u.Fragment != "" || strings.Contains(s, "#"):
			v.add(f, "%q must not have a fragment (RFC 8707)", s)
		case seen[s]:
			v.add(f, "%q is listed twice", s)
		}
		seen[s] = true
	}
}

func (v *validator) duration(field, s string, def, min, max time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		v.add(field, "%q is not a duration such as 5m or 1h", s)
		return def
	}
	if d < min || d > max {
		v.add(field, "must be between %s and %s", min, max)
	}
	return d
}

func (v *validator) tokenAlg(field, s string) string {
	switch s {
	case "":
		return "ES256"
	case "ES256", "RS256":
		return s
	}
	v.add(field, "must be ES256 or RS256")
	return s
}

// Reference holds an agent's reference measurements (RATS reference values). Tokens are
// refused for an agent with any reference value until it presents a current affirming
// attestation result.
type Reference struct {
	ModelDigest        string              `json:"model_digest,omitempty"`
	PromptDigest       string              `json:"prompt_digest,omitempty"`
	ToolManifestDigest string              `json:"tool_manifest_digest,omitempty"`
	TPM                *TPMReference       `json:"tpm,omitempty"`
	Sigstore           []SigstoreReference `json:"sigstore,omitempty"`
	// RequireSigned lists the measurements ("model_digest", "prompt_digest",
	// "tool_manifest_digest") that a valid Sigstore bundle from an allowed signer must
	// cover. Empty means ["model_digest"] when Sigstore signers are registered.
	RequireSigned []string `json:"require_signed,omitempty"`
	// OnMismatch is "" (refuse tokens only) or "suspend" (also suspend the agent).
	OnMismatch string `json:"on_mismatch,omitempty"`
}

// TPMReference is the host's attestation key and expected PCR values.
type TPMReference struct {
	AKPublic string                       `json:"ak_public"`
	PCRs     map[string]map[string]string `json:"pcrs"`
}

// SigstoreReference is a signer identity allowed to sign the agent's artefacts: the
// certificate's OIDC issuer and subject (SAN), each given exactly or as an RE2 regular
// expression that must match the whole value (it is anchored, unlike cosign's
// --certificate-identity-regexp). Giving both forms for one field requires both.
type SigstoreReference struct {
	Issuer        string `json:"issuer,omitempty"`
	Subject       string `json:"subject,omitempty"`
	IssuerRegexp  string `json:"issuer_regexp,omitempty"`
	SubjectRegexp string `json:"subject_regexp,omitempty"`
}

// SignedMeasurements are the names RequireSigned accepts.
var SignedMeasurements = []string{"model_digest", "prompt_digest", "tool_manifest_digest"}

// Required returns the measurements r requires to be signed: RequireSigned, or the
// model digest when Sigstore signers are registered and RequireSigned is empty.
func (r *Reference) Required() []string {
	if len(r.RequireSigned) > 0 {
		return r.RequireSigned
	}
	if len(r.Sigstore) > 0 {
		return []string{"model_digest"}
	}
	return nil
}

// IsZero reports whether r requires nothing.
func (r *Reference) IsZero() bool {
	return r == nil || (r.ModelDigest == "" && r.PromptDigest == "" && r.ToolManifestDigest == "" && r.TPM == nil && len(r.Sigstore) == 0)
}

func (v *validator) reference(field string, r *Reference) {
	if r == nil {
		return
	}
	for name, d := range map[string]string{"model_digest": r.ModelDigest, "prompt_digest": r.PromptDigest, "tool_manifest_digest": r.ToolManifestDigest} {
		if d != "" && !digestRE.MatchString(d) {
			v.add(field+"."+name, "must be sha256:<64 lowercase hex digits>")
		}
	}
	if r.TPM != nil {
		if b, err := base64.StdEncoding.DecodeString(r.TPM.AKPublic); err != nil || len(b) < 16 {
			v.add(field+".tpm.ak_public", "must be the base64 TPM2B_PUBLIC of the attestation key")
		}
		for bank, pcrs := range r.TPM.PCRs {
			size := map[string]int{"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}[bank]
			if size == 0 {
				v.add(field+".tpm.pcrs."+bank, "bank must be sha1, sha256, sha384 or sha512")
				continue
			}
			for idx, val := range pcrs {
				n, err := strconv.Atoi(idx)
				if err != nil || n < 0 || n > 23 || strconv.Itoa(n) != idx {
					v.add(field+".tpm.pcrs."+bank+"."+idx, "PCR index must be 0-23")
				}
				if b, err := hex.DecodeString(val); err != nil || len(b) != size {
					v.add(field+".tpm.pcrs."+bank+"."+idx, "must be %d bytes of hex", size)
				}
			}
		}
	}
	for i, s := range r.Sigstore {
		f := fmt.Sprintf("%s.sigstore[%d]", field, i)
		switch {
		case s.Issuer == "" && s.IssuerRegexp == "":
			v.add(f+".issuer", "is required (or issuer_regexp)")
		case s.Issuer != "":
			if u, err := url.Parse(s.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
				v.add(f+".issuer", "must be an https URL")
			}
		}
		if s.Subject == "" && s.SubjectRegexp == "" {
			v.add(f+".subject", "is required (or subject_regexp)")
		}
		v.text(f+".subject", s.Subject, false, 512)
		v.regexp(f+".issuer_regexp", s.IssuerRegexp)
		v.regexp(f+".subject_regexp", s.SubjectRegexp)
	}
	seen := map[string]bool{}
	for i, name := range r.RequireSigned {
		f := fmt.Sprintf("%s.require_signed[%d]", field, i)
		switch {
		case !slices.Contains(SignedMeasurements, name):
			v.add(f, "must be one of %s", strings.Join(SignedMeasurements, ", "))
		case seen[name]:
			v.add(f, "%s is listed twice", name)
		}
		seen[name] = true
	}
	if len(r.RequireSigned) > 0 && len(r.Sigstore) == 0 {
		v.add(field+".require_signed", "needs at least one signer in sigstore")
	}
	if r.OnMismatch != "" && r.OnMismatch != "suspend" {
		v.add(field+".on_mismatch", `must be "" or "suspend"`)
	}
}

// decodeReference parses a stored reference document.
func decodeReference(b []byte) (*Reference, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var r Reference
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("lifecycle: stored reference: %w", err)
	}
	return &r, nil
}
