package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/federation"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// federationHandler serves /v1/federation (trusted external issuers) and the
// federation view of an agent: both directions of its federation with Entra ID and other
// OIDC issuers. Every change is audited by the domain services.
type federationHandler struct {
	fed    *federation.Service
	svc    *lifecycle.Service
	issuer string
}

func (h *federationHandler) Mount(g *echo.Group) {
	g.GET("/federation/issuers", h.listIssuers, requires(authz.ViewAgents))
	g.POST("/federation/issuers", h.addIssuer, requires(authz.ManageSettings))
	g.DELETE("/federation/issuers", h.removeIssuer, requires(authz.ManageSettings))
	g.GET("/agents/:id/federation", h.get, requires(authz.ViewAgents))
	g.POST("/agents/:id/federation/credentials", h.addCredential, requires(authz.UpdateAgents))
	g.DELETE("/agents/:id/federation/credentials/:cred", h.removeCredential, requires(authz.UpdateAgents))
}

func (h *federationHandler) listIssuers(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"items": h.fed.Issuers()})
}

func (h *federationHandler) addIssuer(c echo.Context) error {
	var req federation.IssuerRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	is, err := h.fed.AddIssuer(c.Request().Context(), actor(c), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, is)
}

// removeIssuer takes the issuer as a query parameter: issuer URLs hold slashes.
func (h *federationHandler) removeIssuer(c echo.Context) error {
	iss := c.QueryParam("issuer")
	if iss == "" {
		return &lifecycle.ValidationError{Fields: []lifecycle.FieldError{{Field: "issuer", Detail: "is required (DELETE /v1/federation/issuers?issuer=<url>)"}}}
	}
	if err := h.fed.RemoveIssuer(c.Request().Context(), actor(c), iss); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return newProblem(http.StatusNotFound, "not-found", fmt.Sprintf("issuer %q is not trusted", iss))
		}
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// federationJSON is an agent's federation in both directions.
type federationJSON struct {
	AgentID string `json:"agent_id"`
	// Inbound: tokens of external issuers that authenticate the agent.
	Credentials []credentialJSON `json:"credentials"`
	// Outbound: what to register in Entra ID so that it trusts the agent's tokens.
	EntraFederation bool   `json:"entra_federation"`
	Issuer          string `json:"issuer"`
	Subject         string `json:"subject"`
	Audience        string `json:"audience"`
}

func (h *federationHandler) render(a *lifecycle.Agent) federationJSON {
	out := federationJSON{AgentID: a.ID, Credentials: []credentialJSON{}, EntraFederation: a.EntraFederation,
		Issuer: h.issuer, Subject: a.ID, Audience: lifecycle.EntraAudience}
	for _, cj := range renderAgent(&a.Agent, a.Credentials, a.Reference).Credentials {
		if cj.Type == store.CredentialFederated {
			out.Credentials = append(out.Credentials, cj)
		}
	}
	return out
}

func (h *federationHandler) get(c echo.Context) error {
	id := c.Param("id")
	a, err := h.svc.Get(c.Request().Context(), id)
	if err != nil {
		return agentErr(id, err)
	}
	return c.JSON(http.StatusOK, h.render(a))
}

func (h *federationHandler) addCredential(c echo.Context) error {
	id := c.Param("id")
	var req lifecycle.FederatedCredentialRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	a, err := h.svc.AddFederatedCredential(c.Request().Context(), actor(c), id, req)
	if err != nil {
		return agentErr(id, err)
	}
	return c.JSON(http.StatusCreated, h.render(a))
}

func (h *federationHandler) removeCredential(c echo.Context) error {
	id := c.Param("id")
	a, err := h.svc.RemoveFederatedCredential(c.Request().Context(), actor(c), id, c.Param("cred"))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return newProblem(http.StatusNotFound, "not-found", fmt.Sprintf("agent %q has no federated credential %q", id, c.Param("cred")))
		}
		return err
	}
	return c.JSON(http.StatusOK, h.render(a))
}
