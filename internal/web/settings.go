package web

import (
	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/authz"
)

type settingsView struct {
	SSO          bool
	Issuer       string
	ClientID     string
	Tenant       string
	Scopes       []string
	RoleClaims   []string
	RoleMap      []authz.Mapping
	Redirect     string
	SessionIdle  string
	SessionMax   string
	RotationDays int
	Roles        []roleRow
}

type roleRow struct {
	Role        authz.Role
	Permissions []authz.Permission
}

// settingsPage shows, to admins, how sign-in and roles are configured: what an admin
// needs to check when someone cannot sign in or lacks a permission. The values come
// from the server's configuration (LANYARD_UI_*); the client secret is never shown.
func (h *Handler) settingsPage(c echo.Context) error {
	if err := authz.Check(c.Request().Context(), authz.ManageSettings, ""); err != nil {
		return err
	}
	sv := settingsView{SessionIdle: h.o.SessionIdle.String(), SessionMax: h.o.SessionMax.String(),
		RotationDays: int(h.o.RotationMaxAge.Hours() / 24), Redirect: h.o.Issuer + "/ui/auth/callback"}
	if h.sso != nil {
		o := h.sso.o
		sv.SSO, sv.Issuer, sv.ClientID, sv.Tenant, sv.Scopes, sv.RoleClaims, sv.RoleMap = true, o.Issuer, o.ClientID, o.Tenant, o.Scopes, o.RoleClaims, o.RoleMap
	}
	for _, r := range authz.Roles {
		sv.Roles = append(sv.Roles, roleRow{Role: r, Permissions: authz.PermissionsOf(r)})
	}
	return h.render(c, 200, "settings", h.newView(c, "Settings", "settings", sv))
}
