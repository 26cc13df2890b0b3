// Package web is Lanyard's web UI for platform teams: the fleet dashboard, the agent
// list and pages, guided registration, lifecycle actions and the audit log, rendered on
// the server with html/template (a little htmx, no inline script).
//
// Every action goes through the same domain services as the /v1 API (lifecycle,
// attest, audit) and the same authorization rules (package authz). Sign-in is OIDC
// (authorization code + PKCE, state and nonce; Microsoft Entra ID first-class) or the
// bootstrap admin token as break-glass; sessions live server-side (store.UISessions)
// with idle and absolute timeouts. Every state-changing request passes
// http.CrossOriginProtection and carries the session's synchronizer token.
package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/rotation"
	"github.com/lanyardhq/lanyard/internal/store"
	assets "github.com/lanyardhq/lanyard/web"
)

// Store is what the UI reads directly: sessions, the dashboard's counters and the
// audit chain (for verification). Agents are read and changed through lifecycle.
type Store interface {
	store.UISessions
	store.Counter
	store.AuditLog
}

// AdminChecker checks the bootstrap admin token (package adminauth).
type AdminChecker interface {
	CheckAdminToken(ctx context.Context, token string) bool
}

// Auditor records UI events (sign-in, sign-out, refused sign-in).
type Auditor interface {
	Record(ctx context.Context, e audit.Event) error
}

// RotationStatus reports credential rotation policy and compliance (package rotation's
// Engine); optional.
type RotationStatus interface {
	AgentStatus(ctx context.Context, agentID string, creds []store.Credential) (*rotation.CredentialStatus, error)
	Compliance(ctx context.Context) (*rotation.Compliance, error)
}

// Deps are the services the UI calls.
type Deps struct {
	Lifecycle *lifecycle.Service
	Attest    *attest.Service
	Audit     Auditor
	Store     Store
	Admin     AdminChecker
	// Rotation, when set, gives the agent page its rotation schedule and the dashboard
	// the scheduler's compliance figures.
	Rotation RotationStatus
}

// Options configure the UI.
type Options struct {
	// Issuer is Lanyard's public base URL: the OIDC redirect URI is Issuer +
	// "/ui/auth/callback", and cookies are Secure when it is https.
	Issuer string
	// OIDC enables single sign-on; nil leaves only the bootstrap admin token.
	OIDC *OIDCOptions
	// SessionIdle and SessionMax are the idle and absolute session timeouts.
	SessionIdle, SessionMax time.Duration
	// RotationMaxAge is the credential age the dashboard counts as overdue for
	// rotation. Default 90 days.
	RotationMaxAge time.Duration
	Logger         *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Handler serves /ui.
type Handler struct {
	d    Deps
	o    Options
	log  *slog.Logger
	sess *sessions
	sso  *sso
	cop  *http.CrossOriginProtection
	tpl  map[string]*template.Template
	// failures limits failed break-glass sign-ins per client address.
	failures failureLimiter
}

// New returns the UI handler. It fails only if the embedded templates do not parse.
func New(d Deps, o Options) (*Handler, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RotationMaxAge == 0 {
		o.RotationMaxAge = 90 * 24 * time.Hour
	}
	if o.SessionIdle == 0 {
		o.SessionIdle = 30 * time.Minute
	}
	if o.SessionMax == 0 {
		o.SessionMax = 12 * time.Hour
	}
	h := &Handler{d: d, o: o, log: o.Logger, cop: http.NewCrossOriginProtection()}
	h.sess = &sessions{st: d.Store, idle: o.SessionIdle, max: o.SessionMax,
		secure: strings.HasPrefix(o.Issuer, "https://"), now: o.Now}
	if o.OIDC != nil {
		h.sso = newSSO(*o.OIDC, o.Issuer+"/ui/auth/callback")
	}
	var err error
	if h.tpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	return h, nil
}

// Mount adds the /ui routes to e.
func (h *Handler) Mount(e *echo.Echo) {
	static := http.StripPrefix("/ui/static/", http.FileServer(http.FS(assets.Static())))
	e.GET("/ui/static/*", echo.WrapHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		securityHeaders(w.Header(), h.sess.secure)
		static.ServeHTTP(w, r)
	})))
	g := e.Group("/ui", h.headers, h.loadSession)
	g.GET("", h.page(h.dashboard, authz.ViewAgents))
	g.GET("/", h.page(h.dashboard, authz.ViewAgents))
	g.GET("/login", h.public(h.loginPage))
	g.POST("/login/token", h.public(h.loginToken))
	g.GET("/auth/oidc", h.public(h.oidcStart))
	g.GET("/auth/callback", h.public(h.oidcCallback))
	g.POST("/logout", h.page(h.logout, ""))
	g.GET("/agents", h.page(h.agentList, authz.ViewAgents))
	g.GET("/agents/new", h.page(h.registerForm, authz.RegisterAgents))
	g.POST("/agents", h.page(h.register, authz.RegisterAgents))
	g.GET("/agents/:id", h.page(h.agentPage, authz.ViewAgents))
	g.POST("/agents/:id/federation/credentials", h.page(h.federationAdd, authz.ViewAgents))
	g.POST("/agents/:id/federation/credentials/:cred/remove", h.page(h.federationRemove, authz.ViewAgents))
	g.POST("/agents/:id/federation/entra", h.page(h.federationEntra, authz.ViewAgents))
	g.GET("/agents/:id/:action", h.page(h.confirmAction, authz.ViewAgents))
	g.POST("/agents/:id/:action", h.page(h.doAction, authz.ViewAgents))
	g.GET("/audit", h.page(h.auditPage, authz.ViewAudit))
	g.GET("/settings", h.page(h.settingsPage, authz.ManageSettings))
	g.Any("/*", h.public(func(c echo.Context) error { return errNotFound }))
}

// errNotFound renders the not-found page.
var errNotFound = errors.New("web: no such page")

// securityHeaders are set on every UI response. The CSP allows scripts and styles from
// this origin only: no inline script or style, no eval, no framing.
func securityHeaders(hd http.Header, tls bool) {
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	if tls {
		hd.Set("Strict-Transport-Security", "max-age=63072000")
	}
}

func (h *Handler) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		hd := c.Response().Header()
		securityHeaders(hd, h.sess.secure || c.Request().TLS != nil)
		hd.Set("Cache-Control", "no-store")
		hd.Set("Vary", "HX-Request, Cookie")
		return next(c)
	}
}

// loadSession puts the signed-in principal, if any, in the request context.
func (h *Handler) loadSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		s, err := h.sess.load(r.Context(), r, store.UISessionUser)
		switch {
		case err == nil:
			c.Set("session", s)
			c.SetRequest(r.WithContext(authz.WithPrincipal(r.Context(), s.Principal)))
		case !errors.Is(err, errNoSession):
			return h.renderError(c, err)
		}
		return next(c)
	}
}

func sessionOf(c echo.Context) *session {
	s, _ := c.Get("session").(*session)
	return s
}

// public wraps a handler that needs no session; POSTs still pass the cross-origin check.
func (h *Handler) public(fn echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := h.cop.Check(c.Request()); err != nil {
			return h.renderError(c, errCSRF)
		}
		if err := fn(c); err != nil {
			return h.renderError(c, err)
		}
		return nil
	}
}

// errCSRF is a state-changing request that failed the CSRF checks.
var errCSRF = errors.New("web: request refused by CSRF protection")

// page wraps a handler that needs a signed-in principal holding perm somewhere (the
// handler checks the agent's namespace itself). State-changing requests must pass the
// cross-origin check and carry the session's synchronizer token.
func (h *Handler) page(fn echo.HandlerFunc, perm authz.Permission) echo.HandlerFunc {
	return func(c echo.Context) error {
		s := sessionOf(c)
		r := c.Request()
		if s == nil {
			if r.Method == http.MethodGet {
				return c.Redirect(http.StatusSeeOther, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()))
			}
			return h.renderError(c, authz.UnauthenticatedError{})
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := h.cop.Check(r); err != nil {
				return h.renderError(c, errCSRF)
			}
			submitted := r.Header.Get("X-CSRF-Token")
			if submitted == "" {
				submitted = c.FormValue("csrf_token")
			}
			if !checkCSRF(s, submitted) {
				h.log.WarnContext(r.Context(), "ui request without a valid CSRF token", "path", r.URL.Path, "actor", s.Principal.Actor())
				return h.renderError(c, errCSRF)
			}
		}
		if perm != "" && !s.Principal.CanSomewhere(perm) {
			return h.renderError(c, &authz.DeniedError{Principal: s.Principal.Name, Permission: perm})
		}
		if err := fn(c); err != nil {
			return h.renderError(c, err)
		}
		return nil
	}
}

// view is what every page template receives.
type view struct {
	Title     string
	Nav       string
	Principal *authz.Principal
	CSRF      string
	SSO       bool
	Data      any
}

func (h *Handler) newView(c echo.Context, title, nav string, data any) view {
	v := view{Title: title, Nav: nav, Data: data, SSO: h.sso != nil}
	if s := sessionOf(c); s != nil {
		v.Principal, v.CSRF = s.Principal, s.CSRF
	}
	return v
}

// render executes the page template (or, for htmx requests that ask for a fragment,
// the named block only) and writes it with status.
func (h *Handler) render(c echo.Context, status int, page string, v view) error {
	t, ok := h.tpl[page]
	if !ok {
		return fmt.Errorf("web: no template %q", page)
	}
	name := "layout"
	if frag := c.Request().Header.Get("HX-Target"); frag != "" && c.Request().Header.Get("HX-Request") == "true" && t.Lookup(frag) != nil {
		name = frag
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, v); err != nil {
		return fmt.Errorf("web: render %s: %w", page, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// errorView is the data of the error page.
type errorView struct {
	Status  int
	Heading string
	Message string
	Hint    string
}

// renderError turns err into a clear page with the right status. Internal errors are
// logged with their cause and shown without it.
func (h *Handler) renderError(c echo.Context, err error) error {
	ev := errorView{Status: http.StatusInternalServerError, Heading: "Something went wrong",
		Message: "Lanyard could not complete this request. The error has been logged; try again, and tell your Lanyard operators if it persists."}
	var (
		de *authz.DeniedError
		te *lifecycle.TransitionError
		ce *lifecycle.ConflictError
		mb *http.MaxBytesError
		ue authz.UnauthenticatedError
	)
	switch {
	case errors.As(err, &de):
		ev = errorView{http.StatusForbidden, "Not allowed", "You (" + de.Principal + ") may not " + string(de.Permission) + where(de.Namespace) + ".",
			"Ask a Lanyard administrator for a role that grants it; your roles come from your identity provider's groups or app roles."}
	case errors.As(err, &ue):
		ev = errorView{http.StatusUnauthorized, "Signed out", "Your session has ended or you are not signed in.", "Sign in again, then repeat the action."}
	case errors.Is(err, errCSRF):
		ev = errorView{http.StatusForbidden, "Request refused", "This request did not come from a Lanyard page of your current session (cross-site request or missing CSRF token), so nothing was changed.",
			"Go back, reload the page and try again."}
	case errors.Is(err, errNotFound), errors.Is(err, store.ErrNotFound):
		ev = errorView{http.StatusNotFound, "Not found", "There is no such page or agent.", ""}
	case errors.As(err, &te):
		ev = errorView{http.StatusConflict, "Not possible in this state", strings.TrimPrefix(te.Error(), "lifecycle: ") + ".", "Nothing was changed."}
	case errors.As(err, &ce):
		ev = errorView{http.StatusConflict, "Conflict", ce.Detail + ".", "Nothing was changed."}
	case errors.As(err, &mb):
		ev = errorView{http.StatusRequestEntityTooLarge, "Too large", fmt.Sprintf("The request exceeds %d bytes.", mb.Limit), "Upload a smaller file."}
	default:
		h.log.ErrorContext(c.Request().Context(), "ui request failed", "path", c.Request().URL.Path, "err", err)
	}
	v := h.newView(c, ev.Heading, "", ev)
	if ev.Status == http.StatusUnauthorized {
		v.Principal = nil
	}
	return h.render(c, ev.Status, "error", v)
}

func where(ns string) string {
	if ns == "" {
		return " in every namespace"
	}
	return " in namespace " + ns
}

// safeNext keeps a post-sign-in redirect on the UI: a local /ui path, never "//host".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/ui/"
	}
	return next
}

// staticFS is here so the templates can reference versioned asset names.
var _ fs.FS = assets.Static()
