package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/lanyardhq/lanyard/internal/authz"
)

// entraTenant is a tenant id (GUID) or a verified domain name.
var entraTenant = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[a-zA-Z0-9.-]+\.[a-zA-Z]{2,})$`)

// UIOIDCEnabled reports whether single sign-on to the web UI is configured.
func (c *Config) UIOIDCEnabled() bool { return c.UIOIDCClientID != "" }

// UIRoleMappings returns the parsed UIRoleMap (validated by Validate).
func (c *Config) UIRoleMappings() []authz.Mapping {
	m, _ := authz.ParseMappings(c.UIRoleMap)
	return m
}

// validateUI checks the web UI options and derives the Entra issuer.
func (c *Config) validateUI() []string {
	var p []string
	if c.UIEntraTenant != "" && !entraTenant.MatchString(c.UIEntraTenant) {
		p = append(p, fmt.Sprintf("LANYARD_UI_ENTRA_TENANT: %q is not a tenant id (GUID) or domain", c.UIEntraTenant))
	}
	if c.UIOIDCIssuer == "" && c.UIEntraTenant != "" && entraTenant.MatchString(c.UIEntraTenant) {
		c.UIOIDCIssuer = "https://login.microsoftonline.com/" + c.UIEntraTenant + "/v2.0"
	}
	if c.UIOIDCIssuer != "" {
		u, err := url.Parse(c.UIOIDCIssuer)
		local := u != nil && (u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1" || u.Hostname() == "::1")
		if err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && local) {
			p = append(p, fmt.Sprintf("LANYARD_UI_OIDC_ISSUER: %q must be an https URL (http only for localhost)", c.UIOIDCIssuer))
		}
	}
	switch {
	case c.UIOIDCClientID != "" && c.UIOIDCIssuer == "":
		p = append(p, "LANYARD_UI_OIDC_CLIENT_ID is set but neither LANYARD_UI_OIDC_ISSUER nor LANYARD_UI_ENTRA_TENANT is")
	case c.UIOIDCClientID == "" && (c.UIOIDCIssuer != "" || c.UIOIDCClientSecret != ""):
		p = append(p, "LANYARD_UI_OIDC_CLIENT_ID is required to enable single sign-on to the web UI")
	}
	if c.UIOIDCClientID != "" && !slices.Contains(strings.Fields(c.UIOIDCScopes), "openid") {
		p = append(p, fmt.Sprintf("LANYARD_UI_OIDC_SCOPES: %q must include openid", c.UIOIDCScopes))
	}
	if _, err := authz.ParseMappings(c.UIRoleMap); err != nil {
		p = append(p, "LANYARD_UI_ROLE_MAP: "+err.Error())
	}
	if c.UISessionIdle < time.Minute || c.UISessionIdle > 24*time.Hour {
		p = append(p, fmt.Sprintf("LANYARD_UI_SESSION_IDLE: %s is outside 1m..24h", c.UISessionIdle))
	}
	if c.UISessionMax < c.UISessionIdle || c.UISessionMax > 7*24*time.Hour {
		p = append(p, fmt.Sprintf("LANYARD_UI_SESSION_MAX: %s must be between LANYARD_UI_SESSION_IDLE (%s) and 168h", c.UISessionMax, c.UISessionIdle))
	}
	return p
}
