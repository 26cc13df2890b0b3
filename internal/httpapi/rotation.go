package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/keys"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/rotation"
	"github.com/lanyardhq/lanyard/internal/store"
)

// rotationHandler serves the rotation status, schedules and manual signing key
// rotation:
//
//	GET    /v1/rotation                 fleet compliance, signing keys, open rotations
//	GET    /v1/agents/{id}/rotation     one agent's credential: policy, last rotated, next due
//	PUT    /v1/agents/{id}/rotation     {"interval": "720h", "grace": "24h"}: the agent's override
//	DELETE /v1/agents/{id}/rotation     back to the server's schedule
//	POST   /v1/signing-keys/rotate      {"alg": "ES256", "immediate": false}
//
// Agent credentials are rotated by hand with POST /v1/agents/{id}/credentials/rotate.
type rotationHandler struct {
	eng   *rotation.Engine
	svc   *lifecycle.Service
	audit *audit.Log
}

func (h *rotationHandler) Mount(g *echo.Group) {
	g.GET("/rotation", h.fleet, requires(authz.ViewAgents))
	g.GET("/agents/:id/rotation", h.agent, requires(authz.ViewAgents))
	g.PUT("/agents/:id/rotation", h.setPolicy, requires(authz.UpdateAgents))
	g.DELETE("/agents/:id/rotation", h.deletePolicy, requires(authz.UpdateAgents))
	g.POST("/signing-keys/rotate", h.rotateKey, requires(authz.ManageSettings))
}

func (h *rotationHandler) fleet(c echo.Context) error {
	ctx := c.Request().Context()
	comp, err := h.eng.Compliance(ctx)
	if err != nil {
		return err
	}
	ks, err := h.eng.SigningKeyStatus(ctx)
	if err != nil {
		return err
	}
	open, err := h.eng.OpenRotations(ctx)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"compliance": comp, "signing_keys": ks, "open_rotations": open})
}

func (h *rotationHandler) agent(c echo.Context) error {
	id := c.Param("id")
	a, err := h.svc.Get(c.Request().Context(), id)
	if err != nil {
		return agentErr(id, err)
	}
	st, err := h.eng.AgentStatus(c.Request().Context(), id, a.Credentials)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

type policyBody struct {
	Interval string `json:"interval"`
	Grace    string `json:"grace"`
}

func (h *rotationHandler) setPolicy(c echo.Context) error {
	id := c.Param("id")
	var body policyBody
	if err := decodeStrict(c, &body); err != nil {
		return err
	}
	var fields []lifecycle.FieldError
	every, err := time.ParseDuration(body.Interval)
	if err != nil || every < 0 || (every > 0 && every < time.Minute) || every > 366*24*time.Hour {
		fields = append(fields, lifecycle.FieldError{Field: "interval", Detail: "must be a duration such as 720h: 0s (never) or between 1m and 8784h"})
	}
	grace := time.Duration(0)
	if body.Grace != "" {
		if grace, err = time.ParseDuration(body.Grace); err != nil || grace < 0 || grace > 30*24*time.Hour {
			fields = append(fields, lifecycle.FieldError{Field: "grace", Detail: "must be a duration between 0s and 720h"})
		}
	}
	if err == nil && every > 0 && grace >= every {
		fields = append(fields, lifecycle.FieldError{Field: "grace", Detail: "must be shorter than interval"})
	}
	if len(fields) > 0 {
		return &lifecycle.ValidationError{Fields: fields}
	}
	ctx := c.Request().Context()
	a, err := h.svc.Get(ctx, id)
	if err != nil {
		return agentErr(id, err)
	}
	if a.Status == store.StatusDecommissioned {
		return &lifecycle.TransitionError{Action: "set the rotation policy of", From: a.Status}
	}
	if err := h.eng.SetAgentPolicy(ctx, id, every, grace); err != nil {
		return err
	}
	if err := h.audit.Record(ctx, audit.Event{Type: "credential.rotation_policy_set", Actor: actor(c), AgentID: id, Namespace: a.Namespace,
		Outcome: "success", Data: map[string]any{"interval": every.String(), "grace": grace.String()}}); err != nil {
		return err
	}
	return h.agent(c)
}

func (h *rotationHandler) deletePolicy(c echo.Context) error {
	id := c.Param("id")
	ctx := c.Request().Context()
	a, err := h.svc.Get(ctx, id)
	if err != nil {
		return agentErr(id, err)
	}
	if err := h.eng.SetAgentPolicy(ctx, id, -1, 0); err != nil {
		return err
	}
	if err := h.audit.Record(ctx, audit.Event{Type: "credential.rotation_policy_removed", Actor: actor(c), AgentID: id, Namespace: a.Namespace, Outcome: "success"}); err != nil {
		return err
	}
	return h.agent(c)
}

type rotateKeyBody struct {
	Alg       string `json:"alg"`
	Immediate bool   `json:"immediate"`
}

func (h *rotationHandler) rotateKey(c echo.Context) error {
	var body rotateKeyBody
	if c.Request().ContentLength != 0 {
		if err := decodeStrict(c, &body); err != nil {
			return err
		}
	}
	if body.Alg == "" {
		body.Alg = keys.ES256
	}
	r, err := h.eng.RotateSigningKey(c.Request().Context(), actor(c), body.Alg, lifecycle.CauseManual, body.Immediate)
	if errors.Is(err, keys.ErrUnsupportedAlg) {
		return &lifecycle.ValidationError{Fields: []lifecycle.FieldError{{Field: "alg", Detail: "must be ES256 or RS256"}}}
	}
	if errors.Is(err, rotation.ErrSecretsBackend) {
		// The rotation is recorded and the scheduler retries it with backoff.
		return &lifecycle.UnavailableError{Err: err}
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if r.FinishedAt == nil {
		status = http.StatusAccepted // published; the scheduler activates it after the publish-ahead period
	}
	return c.JSON(status, rotation.View(*r))
}
