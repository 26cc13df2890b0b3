package web

import (
	"crypto/subtle"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/authz"
)

// loginCSRFCookie carries the double-submit token of the break-glass form: there is no
// session yet to hold a synchronizer token.
const loginCSRFCookie = "lanyard_login_csrf"

type loginView struct {
	Next      string
	Error     string
	LoginCSRF string
	SSOName   string
}

func (h *Handler) loginPage(c echo.Context) error {
	return h.showLogin(c, http.StatusOK, "")
}

func (h *Handler) showLogin(c echo.Context, status int, msg string) error {
	tok := randomToken()
	http.SetCookie(c.Response(), &http.Cookie{Name: loginCSRFCookie, Value: tok, Path: "/ui/login", MaxAge: 3600,
		HttpOnly: true, Secure: h.sess.secure, SameSite: http.SameSiteStrictMode})
	lv := loginView{Next: safeNext(c.QueryParam("next")), Error: msg, LoginCSRF: tok}
	if c.Request().Method == http.MethodPost {
		lv.Next = safeNext(c.FormValue("next"))
	}
	if h.sso != nil {
		lv.SSOName = h.sso.o.DisplayName
	}
	v := h.newView(c, "Sign in", "", lv)
	return h.render(c, status, "login", v)
}

// loginError shows the sign-in page with an error (OIDC failures).
func (h *Handler) loginError(c echo.Context, status int, msg string) error {
	return h.showLogin(c, status, msg)
}

// loginToken is the break-glass sign-in with the bootstrap admin token.
func (h *Handler) loginToken(c echo.Context) error {
	ck, err := c.Cookie(loginCSRFCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.FormValue("csrf_token"))) != 1 || len(ck.Value) != 43 {
		return errCSRF
	}
	ctx := c.Request().Context()
	if !h.d.Admin.CheckAdminToken(ctx, c.FormValue("token")) {
		h.recordAuth(ctx, "admin.auth_failed", "anonymous", "failure", "admin token is not valid",
			map[string]any{"method": "POST", "path": "/ui/login/token"})
		return h.showLogin(c, http.StatusUnauthorized, "That is not the admin token.")
	}
	return h.signIn(c, authz.BootstrapAdmin(), c.FormValue("next"))
}

func (h *Handler) logout(c echo.Context) error {
	s := sessionOf(c)
	if err := h.sess.destroy(c.Request().Context(), c.Response(), s); err != nil {
		return err
	}
	h.recordAuth(c.Request().Context(), "ui.signed_out", s.Principal.Actor(), "success", "", map[string]any{"subject": s.Principal.Subject})
	return c.Redirect(http.StatusSeeOther, "/ui/login")
}
