package httpapi

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// allow asks authz, as the web UI does, whether the caller may exercise perm in
// namespace ("" for every namespace).
func allow(c echo.Context, perm authz.Permission, namespace string) error {
	return authz.Check(c.Request().Context(), perm, namespace)
}

// allowAgent loads the agent id and checks perm in its namespace. An agent the caller
// may not even view is reported as not found.
func (h *agentsHandler) allowAgent(c echo.Context, id string, perm authz.Permission) (*lifecycle.Agent, error) {
	a, err := h.svc.Get(c.Request().Context(), id)
	if err != nil {
		return nil, agentErr(id, err)
	}
	if allow(c, authz.ViewAgents, a.Namespace) != nil {
		return nil, agentErr(id, store.ErrNotFound)
	}
	if err := allow(c, perm, a.Namespace); err != nil {
		return nil, err
	}
	return a, nil
}

// authzProblem maps authz errors to problems; nil for other errors.
func authzProblem(err error) *Problem {
	var de *authz.DeniedError
	var ue authz.UnauthenticatedError
	switch {
	case errors.As(err, &de):
		return newProblem(http.StatusForbidden, "forbidden", de.Detail())
	case errors.As(err, &ue):
		return newProblem(http.StatusUnauthorized, "unauthenticated", "send the admin token as 'Authorization: Bearer <token>'")
	}
	return nil
}

// requires checks perm in every namespace before the handler runs. Routes that are not
// about one agent (issuers, fleet rotation status, signing keys, TPM enrolment) use it;
// per-agent routes under it fail closed for a namespace-scoped caller, who needs a
// grant without namespaces for them.
func requires(perm authz.Permission) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := allow(c, perm, ""); err != nil {
				return err
			}
			return next(c)
		}
	}
}
