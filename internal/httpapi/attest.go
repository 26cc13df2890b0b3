package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/oauth"
	"github.com/lanyardhq/lanyard/internal/protocol"
	"github.com/lanyardhq/lanyard/internal/store"
)

// attestHandler serves the agent-facing attestation endpoints (authenticated like the
// token endpoint) and the admin listing of an agent's verdicts.
type attestHandler struct {
	svc    *attest.Service
	oauth  *oauth.Provider
	issuer string
}

// MountAgent mounts the endpoints agents call.
func (h *attestHandler) MountAgent(e *echo.Echo) {
	e.POST("/v1/attestations/challenge", h.challenge, v1Request)
	e.POST("/v1/attestations", h.attest, v1Request)
}

// MountAdmin mounts the admin endpoints.
func (h *attestHandler) MountAdmin(g *echo.Group) {
	g.GET("/agents/:id/attestations", h.list)
}

// clientAuth are the client authentication members of an attestation request body.
type clientAuth struct {
	ClientID            string `json:"client_id,omitempty"`
	ClientAssertionType string `json:"client_assertion_type,omitempty"`
	ClientAssertion     string `json:"client_assertion,omitempty"`
	ClientSecret        string `json:"client_secret,omitempty"`
}

func (a clientAuth) form() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"client_id": a.ClientID, "client_assertion_type": a.ClientAssertionType,
		"client_assertion": a.ClientAssertion, "client_secret": a.ClientSecret} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// authenticate authenticates the agent calling endpoint as the token endpoint would,
// and requires it to be active.
func (h *attestHandler) authenticate(c echo.Context, form url.Values, endpoint string) (*store.Agent, error) {
	a, _, err := h.oauth.Authenticate(c.Request().Context(), c.Request(), form, h.issuer+endpoint)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code != protocol.ErrServerError {
			status := pe.Status
			if status == 0 {
				status = http.StatusUnauthorized
			}
			return nil, newProblem(status, "client-authentication", pe.Description)
		}
		return nil, err
	}
	if a.Status != store.StatusActive {
		return nil, newProblem(http.StatusForbidden, "agent-not-active", fmt.Sprintf("agent is %s", a.Status))
	}
	return a, nil
}

func (h *attestHandler) challenge(c echo.Context) error {
	var form url.Values
	r := c.Request()
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return toProblem(err)
		}
		form = r.PostForm
	case "application/json", "":
		var auth clientAuth
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return toProblem(err)
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decodeJSON(body, &auth); err != nil {
				return err
			}
		}
		form = auth.form()
	default:
		return newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", "send the body as application/json or a form")
	}
	a, err := h.authenticate(c, form, "/v1/attestations/challenge")
	if err != nil {
		return err
	}
	nonce, exp, err := h.svc.Challenge(r.Context(), a)
	if errors.Is(err, attest.ErrTooManyChallenges) {
		c.Response().Header().Set("Retry-After", "60")
		return newProblem(http.StatusTooManyRequests, "too-many-challenges", strings.TrimPrefix(err.Error(), "attest: "))
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]string{"nonce": nonce, "expires_at": exp.Format(time.RFC3339)})
}

// attestRequest is the body of POST /v1/attestations: client authentication and evidence.
type attestRequest struct {
	clientAuth
	attest.Evidence
}

// resultJSON is the API form of a verdict.
type resultJSON struct {
	ID           string              `json:"id"`
	AgentID      string              `json:"agent_id"`
	Status       string              `json:"status"`
	Host         string              `json:"host"`
	IssuedAt     time.Time           `json:"issued_at"`
	ExpiresAt    time.Time           `json:"expires_at"`
	Measurements attest.Measurements `json:"measurements"`
	Checks       []attest.Check      `json:"checks"`
	Token        string              `json:"token,omitempty"`
}

func renderResult(r *attest.Result) resultJSON {
	return resultJSON{ID: r.ID, AgentID: r.AgentID, Status: r.Status, Host: r.Host, IssuedAt: r.IssuedAt,
		ExpiresAt: r.ExpiresAt, Measurements: r.Measurements, Checks: r.Checks, Token: r.Token}
}

func (h *attestHandler) attest(c echo.Context) error {
	var req attestRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	a, err := h.authenticate(c, req.clientAuth.form(), "/v1/attestations")
	if err != nil {
		return err
	}
	res, err := h.svc.Attest(c.Request().Context(), a, &req.Evidence)
	if errors.Is(err, attest.ErrMalformed) {
		return newProblem(http.StatusBadRequest, "malformed-evidence", err.Error())
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Location", "/v1/agents/"+a.ID+"/attestations")
	return c.JSON(http.StatusCreated, renderResult(res))
}

func (h *attestHandler) list(c echo.Context) error {
	// The handler does not load the agent, so it asks for viewing rights everywhere
	// (a namespace-scoped caller sees attestations on the agent's UI page instead).
	if err := allow(c, authz.ViewAgents, ""); err != nil {
		return err
	}
	limit := 20
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return newProblem(http.StatusBadRequest, "validation", "limit must be an integer from 1 to 100")
		}
		limit = n
	}
	list, err := h.svc.List(c.Request().Context(), c.Param("id"), limit)
	if err != nil {
		return err
	}
	items := make([]resultJSON, len(list))
	for i := range list {
		items[i] = renderResult(&list[i])
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}
