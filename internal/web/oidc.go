package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/store"
)

// OIDCOptions configure single sign-on.
type OIDCOptions struct {
	// Issuer is the OpenID provider (for Entra: https://login.microsoftonline.com/<tid>/v2.0).
	Issuer       string
	ClientID     string
	ClientSecret string
	Scopes       []string
	// Tenant, when set, must equal the ID token's tid claim (Entra).
	Tenant string
	// RoleClaims are the ID-token claims whose values RoleMap maps to grants
	// (Entra: "groups" for security groups, "roles" for app roles).
	RoleClaims []string
	RoleMap    []authz.Mapping
	// HTTPClient talks to the provider. Default: a client with a 10s timeout, so an
	// unresponsive provider fails a sign-in rather than hanging it.
	HTTPClient *http.Client
	// DisplayName labels the sign-in button. Default "Microsoft Entra ID" when Tenant
	// is set, else "single sign-on".
	DisplayName string
}

// sso is the OIDC relying party. The provider's discovery document is fetched on first
// use (and again after a failure), so Lanyard starts while the provider is unreachable.
type sso struct {
	o        OIDCOptions
	redirect string

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	conf     *oauth2.Config
}

func newSSO(o OIDCOptions, redirect string) *sso {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.DisplayName == "" {
		o.DisplayName = "single sign-on"
		if o.Tenant != "" {
			o.DisplayName = "Microsoft Entra ID"
		}
	}
	return &sso{o: o, redirect: redirect}
}

func (s *sso) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, s.o.HTTPClient)
}

func (s *sso) init(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conf != nil {
		return s.conf, s.verifier, nil
	}
	p, err := oidc.NewProvider(s.ctx(ctx), s.o.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("web: discover OpenID provider %s: %w", s.o.Issuer, err)
	}
	s.verifier = p.Verifier(&oidc.Config{ClientID: s.o.ClientID, SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256, oidc.PS256}})
	s.conf = &oauth2.Config{ClientID: s.o.ClientID, ClientSecret: s.o.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: s.redirect, Scopes: s.o.Scopes}
	return s.conf, s.verifier, nil
}

// oidcStart begins a sign-in: a short-lived login session holds state, nonce and the
// PKCE verifier; the browser goes to the provider.
func (h *Handler) oidcStart(c echo.Context) error {
	if h.sso == nil {
		return errNotFound
	}
	conf, _, err := h.sso.init(c.Request().Context())
	if err != nil {
		h.log.ErrorContext(c.Request().Context(), "single sign-on unavailable", "err", err)
		return h.loginError(c, http.StatusBadGateway, "The identity provider cannot be reached, so single sign-on is unavailable right now. Administrators can sign in with the bootstrap admin token.")
	}
	ls := &session{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Next: safeNext(c.QueryParam("next"))}
	if err := h.sess.create(c.Request().Context(), c.Response(), store.UISessionLogin, ls); err != nil {
		return err
	}
	return c.Redirect(http.StatusFound, conf.AuthCodeURL(ls.State, oidc.Nonce(ls.Nonce), oauth2.S256ChallengeOption(ls.Verifier)))
}

// idClaims are the ID-token claims the UI reads. Entra puts tid, oid, groups and roles.
type idClaims struct {
	Subject           string                  `json:"sub"`
	Name              string                  `json:"name"`
	PreferredUsername string                  `json:"preferred_username"`
	Email             string                  `json:"email"`
	Nonce             string                  `json:"nonce"`
	TenantID          string                  `json:"tid"`
	ObjectID          string                  `json:"oid"`
	ClaimNames        struct{ Groups string } `json:"_claim_names"`
}

// oidcCallback finishes a sign-in: the login session is consumed (single use), state
// and nonce are compared in constant time, the code is redeemed with the PKCE verifier,
// and the ID token is verified against the provider's JWKS (signature, issuer,
// audience, expiry) before any claim is read.
func (h *Handler) oidcCallback(c echo.Context) error {
	if h.sso == nil {
		return errNotFound
	}
	ctx := c.Request().Context()
	ls, err := h.sess.load(ctx, c.Request(), store.UISessionLogin)
	if errors.Is(err, errNoSession) {
		return h.loginError(c, http.StatusBadRequest, "This sign-in link has expired or was already used. Start again.")
	}
	if err != nil {
		return err
	}
	if err := h.sess.destroy(ctx, c.Response(), ls); err != nil {
		return err
	}
	q := c.QueryParams()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(ls.State)) != 1 {
		return h.loginError(c, http.StatusBadRequest, "The sign-in response does not belong to this browser's sign-in (state mismatch). Start again.")
	}
	if e := q.Get("error"); e != "" {
		return h.loginError(c, http.StatusUnauthorized, "The identity provider refused the sign-in: "+e+": "+q.Get("error_description"))
	}
	conf, verifier, err := h.sso.init(ctx)
	if err != nil {
		return err
	}
	tok, err := conf.Exchange(h.sso.ctx(ctx), q.Get("code"), oauth2.VerifierOption(ls.Verifier))
	if err != nil {
		h.log.WarnContext(ctx, "oidc code exchange failed", "err", err)
		return h.loginError(c, http.StatusUnauthorized, "The identity provider did not accept the sign-in code. Start again.")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return h.loginError(c, http.StatusUnauthorized, "The identity provider returned no ID token.")
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		h.log.WarnContext(ctx, "oidc id token refused", "err", err)
		return h.loginError(c, http.StatusUnauthorized, "The ID token from the identity provider did not verify.")
	}
	var cl idClaims
	var all map[string]any
	if err := idt.Claims(&cl); err != nil {
		return h.loginError(c, http.StatusUnauthorized, "The ID token's claims are malformed.")
	}
	_ = idt.Claims(&all)
	if subtle.ConstantTimeCompare([]byte(cl.Nonce), []byte(ls.Nonce)) != 1 {
		return h.loginError(c, http.StatusUnauthorized, "The ID token was not issued for this sign-in (nonce mismatch). Start again.")
	}
	if t := h.sso.o.Tenant; t != "" && !strings.EqualFold(cl.TenantID, t) {
		return h.loginError(c, http.StatusForbidden, "Your account belongs to another Microsoft Entra tenant.")
	}
	name := firstNonEmpty(cl.PreferredUsername, cl.Email, cl.Name, cl.ObjectID, cl.Subject)
	values := claimValues(all, h.sso.o.RoleClaims)
	p := &authz.Principal{Subject: "oidc:" + idt.Issuer + "#" + cl.Subject, Name: name, Method: "oidc", Tenant: cl.TenantID,
		Grants: authz.Resolve(h.sso.o.RoleMap, values)}
	if cl.ObjectID != "" {
		p.Subject = "oidc:" + idt.Issuer + "#oid:" + cl.ObjectID // Entra: oid is stable across applications
	}
	if len(p.Grants) == 0 {
		h.recordAuth(ctx, "ui.sign_in_refused", p.Actor(), "failure", "no role is mapped to the user's claims",
			map[string]any{"subject": p.Subject, "claim_values": values})
		msg := "You signed in as " + name + ", but none of your groups or app roles is mapped to a Lanyard role."
		if cl.ClaimNames.Groups != "" {
			msg += " Your identity provider left the groups out of the token (the user is in too many groups: Entra's groups overage); map app roles instead, or emit only groups assigned to the application."
		} else if len(values) > 0 {
			msg += " Values received: " + strings.Join(values, ", ") + "."
		}
		return h.loginError(c, http.StatusForbidden, msg)
	}
	return h.signIn(c, p, ls.Next)
}

// signIn starts a user session for p (a fresh token: no fixation) and records it.
func (h *Handler) signIn(c echo.Context, p *authz.Principal, next string) error {
	ctx := c.Request().Context()
	if old := sessionOf(c); old != nil {
		_ = h.sess.destroy(ctx, c.Response(), old)
	}
	s := &session{Principal: p, CSRF: randomToken()}
	if err := h.sess.create(ctx, c.Response(), store.UISessionUser, s); err != nil {
		return err
	}
	h.recordAuth(ctx, "ui.signed_in", p.Actor(), "success", "", map[string]any{"method": p.Method, "subject": p.Subject, "roles": p.RoleNames()})
	return c.Redirect(http.StatusSeeOther, safeNext(next))
}

func (h *Handler) recordAuth(ctx context.Context, typ, actor, outcome, reason string, data map[string]any) {
	if err := h.d.Audit.Record(ctx, audit.Event{Type: typ, Actor: actor, Outcome: outcome, Reason: reason,
		RequestID: requestid.From(ctx), Data: data}); err != nil {
		h.log.ErrorContext(ctx, "audit event lost", "type", typ, "err", err)
	}
}

// claimValues collects the string values of the named claims (a string or a list).
func claimValues(all map[string]any, names []string) []string {
	var out []string
	for _, n := range names {
		switch v := all[n].(type) {
		case string:
			out = append(out, v)
		case []any:
			for _, x := range v {
				if s, ok := x.(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
