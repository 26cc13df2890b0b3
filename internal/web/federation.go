package web

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
)

// The agent page's Federation panel edits both directions through the lifecycle
// service, as lanyard agent federate does through /v1: inbound federated credentials
// (an external issuer's tokens authenticate the agent) and the outbound Entra flag.
// Each change needs the permission to update agents in the agent's namespace, and the
// service audits it (credential.federated_added|removed, agent.updated).

// federationAdd adds a federated credential from the panel's form.
func (h *Handler) federationAdd(c echo.Context) error {
	a, err := h.loadAgent(c, authz.UpdateAgents)
	if err != nil {
		return err
	}
	req := lifecycle.FederatedCredentialRequest{
		Issuer:          strings.TrimSpace(c.FormValue("issuer")),
		Subject:         strings.TrimSpace(c.FormValue("subject")),
		Audience:        strings.TrimSpace(c.FormValue("audience")),
		RequireAppToken: c.FormValue("app_only") == "on",
	}
	for _, id := range strings.FieldsFunc(c.FormValue("client_ids"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' }) {
		req.AllowedClientIDs = append(req.AllowedClientIDs, id)
	}
	ctx := c.Request().Context()
	if _, err := h.d.Lifecycle.AddFederatedCredential(ctx, authz.FromContext(ctx).Actor(), a.ID, req); err != nil {
		if fe := fieldErrors(err); fe != nil {
			return h.federationError(c, a, fe)
		}
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/ui/agents/"+a.ID+"#federation")
}

// federationRemove removes one federated credential.
func (h *Handler) federationRemove(c echo.Context) error {
	a, err := h.loadAgent(c, authz.UpdateAgents)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if _, err := h.d.Lifecycle.RemoveFederatedCredential(ctx, authz.FromContext(ctx).Actor(), a.ID, c.Param("cred")); err != nil {
		if fe := fieldErrors(err); fe != nil {
			return h.federationError(c, a, fe)
		}
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/ui/agents/"+a.ID+"#federation")
}

// federationEntra turns Entra workload identity federation on or off.
func (h *Handler) federationEntra(c echo.Context) error {
	a, err := h.loadAgent(c, authz.UpdateAgents)
	if err != nil {
		return err
	}
	on := c.FormValue("enable") == "true"
	ctx := c.Request().Context()
	if _, err := h.d.Lifecycle.Patch(ctx, authz.FromContext(ctx).Actor(), a.ID, lifecycle.PatchRequest{EntraFederation: &on}); err != nil {
		if fe := fieldErrors(err); fe != nil {
			return h.federationError(c, a, fe)
		}
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/ui/agents/"+a.ID+"#federation")
}

// federationError shows what the service refused, on the error page with a way back.
func (h *Handler) federationError(c echo.Context, a *lifecycle.Agent, fe []lifecycle.FieldError) error {
	return h.render(c, http.StatusBadRequest, "federation_error", h.newView(c, "Federation not changed", "agents",
		struct {
			A      *lifecycle.Agent
			Errors []lifecycle.FieldError
		}{a, fe}))
}
