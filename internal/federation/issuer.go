// Package federation trusts tokens from external OpenID Connect issuers — Microsoft
// Entra ID first, and any issuer with a discovery document and a JWKS (GitHub Actions,
// Kubernetes service-account issuers, SPIRE) — so that an agent can authenticate at the
// token endpoint with a token its platform already gives it.
//
// Contract:
//   - Trust is configured by admins (server configuration or the /v1 API), never implied
//     by a token: a token whose iss is not a configured issuer is refused before anything
//     is fetched.
//   - Keys come from the issuer's discovery document and JWKS, fetched in the background
//     and cached. A request never causes a fetch, except once per MinRefetch interval per
//     issuer when a token names a kid the cache does not hold (key rotation). When the
//     JWKS endpoint is down, cached keys keep working and an unknown kid is refused with
//     an error that says so.
//   - The alg allow-list of the issuer is checked before any key is looked at.
//   - Entra ID issuers (kind "entra") also get Entra's checks: tid equal to the tenant in
//     iss, ver consistent with the issuer (v1 or v2), oid equal to the registered
//     subject, uti as the token id, optional idtyp=app and azp/appid allow-lists.
package federation

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Issuer kinds.
const (
	KindEntra = "entra"
	KindOIDC  = "oidc"
)

// Issuer is a trusted external issuer.
type Issuer struct {
	// Issuer is the exact iss of its tokens.
	Issuer string `json:"issuer"`
	// Kind is "entra" or "oidc".
	Kind string `json:"kind"`
	// Algs are the accepted JWS algorithms.
	Algs []string `json:"algs"`
	// JWKSURL, when set, is used instead of the discovery document's jwks_uri.
	JWKSURL string `json:"jwks_url,omitempty"`
	// Source is "config" (read-only, from the server configuration) or "api".
	Source    string    `json:"source"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// IssuerRequest is the body of POST /v1/federation/issuers.
type IssuerRequest struct {
	Issuer  string   `json:"issuer"`
	Kind    string   `json:"kind,omitempty"`
	Algs    []string `json:"algs,omitempty"`
	JWKSURL string   `json:"jwks_url,omitempty"`
}

// entraHosts are the hosts of Entra ID's issuers in the public cloud and the national
// clouds; their kind defaults to "entra".
var entraHosts = []string{
	"login.microsoftonline.com", "sts.windows.net",
	"login.microsoftonline.us", "login.partner.microsoftonline.cn", "sts.chinacloudapi.cn",
}

// supportedAlgs are the algorithms an issuer may be trusted for.
var supportedAlgs = []string{"RS256", "PS256", "ES256"}

// Validate checks r and returns the issuer it describes, with defaults applied.
func (r IssuerRequest) Validate() (*Issuer, error) {
	var fields []lifecycle.FieldError
	add := func(field, format string, args ...any) {
		fields = append(fields, lifecycle.FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	u, err := checkURL(r.Issuer)
	if err != nil {
		add("issuer", "%v", err)
	}
	kind := r.Kind
	if kind == "" {
		kind = KindOIDC
		if u != nil && slices.Contains(entraHosts, u.Hostname()) {
			kind = KindEntra
		}
	}
	switch kind {
	case KindOIDC:
	case KindEntra:
		if u != nil {
			if _, err := entraTenant(r.Issuer); err != nil {
				add("issuer", "%v", err)
			}
		}
	default:
		add("kind", "must be entra or oidc")
	}
	algs := r.Algs
	if len(algs) == 0 {
		algs = []string{"RS256"}
	}
	seen := map[string]bool{}
	for i, a := range algs {
		f := fmt.Sprintf("algs[%d]", i)
		switch {
		case !slices.Contains(supportedAlgs, a):
			add(f, "%q is not supported; use RS256, PS256 or ES256", a)
		case kind == KindEntra && a != "RS256":
			add(f, "Entra ID signs with RS256 only")
		case seen[a]:
			add(f, "%q is listed twice", a)
		}
		seen[a] = true
	}
	if r.JWKSURL != "" {
		if _, err := checkURL(r.JWKSURL); err != nil {
			add("jwks_url", "%v", err)
		}
	}
	if len(fields) > 0 {
		return nil, &lifecycle.ValidationError{Fields: fields}
	}
	return &Issuer{Issuer: r.Issuer, Kind: kind, Algs: slices.Clone(algs), JWKSURL: r.JWKSURL}, nil
}

// checkURL accepts an https URL without query or fragment, or an http URL on a loopback
// host (a local issuer in development and tests).
func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return nil, fmt.Errorf("is required")
	case err != nil || !u.IsAbs() || u.Host == "" || len(s) > 1024:
		return nil, fmt.Errorf("%q must be an absolute URL", clip(s))
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("%q must not have a query, fragment or user info", clip(s))
	case u.Scheme == "https":
		return u, nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return u, nil
	}
	return nil, fmt.Errorf("%q must be an https URL (http only on a loopback host)", clip(s))
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// entraTenant returns the tenant of an Entra issuer: the first path segment of
// https://login.microsoftonline.com/{tenant}/v2.0 and https://sts.windows.net/{tenant}/.
// Multi-tenant placeholders are refused: trust is per tenant.
func entraTenant(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return "", fmt.Errorf("not a URL")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	t := parts[0]
	switch {
	case t == "":
		return "", fmt.Errorf("an Entra ID issuer must name its tenant: https://login.microsoftonline.com/<tenant>/v2.0 or https://sts.windows.net/<tenant>/")
	case t == "common" || t == "organizations" || t == "consumers" || strings.Contains(t, "{"):
		return "", fmt.Errorf("an Entra ID issuer must name one tenant, not %q", t)
	case len(parts) > 2 || (len(parts) == 2 && parts[1] != "v2.0"):
		return "", fmt.Errorf("an Entra ID issuer is <base>/<tenant>/v2.0 (v2) or <base>/<tenant>/ (v1)")
	}
	return t, nil
}

// entraVersion is "2.0" for a v2 issuer (…/v2.0) and "1.0" otherwise.
func entraVersion(issuer string) string {
	if strings.HasSuffix(strings.TrimSuffix(issuer, "/"), "/v2.0") {
		return "2.0"
	}
	return "1.0"
}

// ParseConfigIssuers parses the server option federation-issuers: a comma-separated list
// of issuer URLs, each trusted with its kind's defaults (RS256, discovery).
func ParseConfigIssuers(s string) ([]Issuer, error) {
	var out []Issuer
	var errs []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		iss, err := IssuerRequest{Issuer: part}.Validate()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		iss.Source = "config"
		out = append(out, *iss)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("federation issuers: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

func fromRecord(r store.FederationIssuer) Issuer {
	return Issuer{Issuer: r.Issuer, Kind: r.Kind, Algs: slices.Clone([]string(r.Algs)), JWKSURL: r.JWKSURL, Source: "api", CreatedAt: r.CreatedAt}
}

// discoveryURL is where the issuer's OpenID configuration is. Entra v1 issuers
// (https://sts.windows.net/{tenant}/) publish it under login.microsoftonline.com.
func (i *Issuer) discoveryURL() string {
	if u, err := url.Parse(i.Issuer); err == nil && u.Host == "sts.windows.net" {
		if t, err := entraTenant(i.Issuer); err == nil {
			return "https://login.microsoftonline.com/" + t + "/.well-known/openid-configuration"
		}
	}
	return strings.TrimSuffix(i.Issuer, "/") + "/.well-known/openid-configuration"
}

// clip bounds caller-chosen text echoed into an error.
func clip(s string) string {
	if len(s) > 96 {
		return s[:96] + "…"
	}
	return s
}
