package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// agentsHandler serves /v1/agents.
type agentsHandler struct {
	svc *lifecycle.Service
}

func (h *agentsHandler) Mount(g *echo.Group) {
	g.POST("/agents", h.register)
	g.GET("/agents", h.list)
	g.GET("/agents/:id", h.get)
	g.PATCH("/agents/:id", h.patch)
	g.POST("/agents/:id/credentials/rotate", h.rotate)
	g.POST("/agents/:id/:action", h.transition)
}

// agentJSON is the API representation of an agent.
type agentJSON struct {
	ID               string               `json:"id"`
	ClientID         string               `json:"client_id"`
	Name             string               `json:"name"`
	Namespace        string               `json:"namespace"`
	Owner            string               `json:"owner"`
	Purpose          string               `json:"purpose"`
	RiskLevel        string               `json:"risk_level"`
	Status           string               `json:"status"`
	StatusReason     string               `json:"status_reason,omitempty"`
	TokenAlg         string               `json:"token_alg"`
	CredentialType   string               `json:"credential_type"`
	Credentials      []credentialJSON     `json:"credentials,omitempty"`
	Reference        *lifecycle.Reference `json:"reference,omitempty"`
	AllowedScopes    []string             `json:"allowed_scopes"`
	AllowedResources []string             `json:"allowed_resources"`
	MaxTokenTTL      string               `json:"max_token_ttl"`
	AttestationTTL   string               `json:"attestation_ttl"`
	CanIntrospect    bool                 `json:"can_introspect"`
	EntraFederation  bool                 `json:"entra_federation"`
	TokensNotBefore  *time.Time           `json:"tokens_not_before,omitempty"`
	CreatedAt        time.Time            `json:"created_at"`
	UpdatedAt        time.Time            `json:"updated_at"`
}

type credentialJSON struct {
	ID        string     `json:"id"`
	Type      string     `json:"type"`
	State     string     `json:"state"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	KIDs      []string   `json:"kids,omitempty"`
	// SecretPath and SecretVersion locate a Lanyard-generated credential in the secrets
	// backend (the KV v2 path inside the mount, after any configured prefix).
	SecretPath    string `json:"secret_path,omitempty"`
	SecretVersion int    `json:"secret_version,omitempty"`
	// Federated credentials only.
	Issuer           string   `json:"issuer,omitempty"`
	Subject          string   `json:"subject,omitempty"`
	Audience         string   `json:"audience,omitempty"`
	AllowedClientIDs []string `json:"allowed_client_ids,omitempty"`
	RequireAppToken  bool     `json:"require_app_token,omitempty"`
}

func renderAgent(a *store.Agent, creds []store.Credential, ref *lifecycle.Reference) agentJSON {
	out := agentJSON{
		ID: a.ID, ClientID: a.ClientID, Name: a.Name, Namespace: a.Namespace, Owner: a.Owner,
		Purpose: a.Purpose, RiskLevel: a.RiskLevel, Status: a.Status, StatusReason: a.StatusReason,
		TokenAlg: a.TokenAlg, CredentialType: a.CredentialType, Reference: ref,
		AllowedScopes: nonNilList(a.AllowedScopes), AllowedResources: nonNilList(a.AllowedResources),
		MaxTokenTTL:     (time.Duration(a.MaxTokenTTLSeconds) * time.Second).String(),
		AttestationTTL:  (time.Duration(a.AttestationTTLSeconds) * time.Second).String(),
		CanIntrospect:   a.CanIntrospect,
		EntraFederation: a.EntraFederation,
		TokensNotBefore: a.TokensNotBefore,
		CreatedAt:       a.CreatedAt, UpdatedAt: a.UpdatedAt,
	}
	if ref == nil && len(a.Reference) > 0 {
		var r lifecycle.Reference
		if json.Unmarshal(a.Reference, &r) == nil {
			out.Reference = &r
		}
	}
	for _, c := range creds {
		cj := credentialJSON{ID: c.ID, Type: c.Type, State: c.State, CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt,
			SecretPath: c.SecretPath, SecretVersion: c.SecretVersion,
			Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience, AllowedClientIDs: c.AllowedClientIDs, RequireAppToken: c.RequireAppToken}
		if len(c.JWKS) > 0 {
			var set jose.JSONWebKeySet
			if json.Unmarshal(c.JWKS, &set) == nil {
				for _, k := range set.Keys {
					cj.KIDs = append(cj.KIDs, k.KeyID)
				}
			}
		}
		out.Credentials = append(out.Credentials, cj)
	}
	return out
}

func nonNilList(l store.StringList) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func detail(a *lifecycle.Agent) agentJSON { return renderAgent(&a.Agent, a.Credentials, a.Reference) }

func (h *agentsHandler) register(c echo.Context) error {
	var req lifecycle.RegisterRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	if err := allow(c, authz.RegisterAgents, req.Namespace); err != nil {
		return err
	}
	res, err := h.svc.Register(c.Request().Context(), actor(c), req)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/v1/agents/"+res.Agent.ID)
	c.Response().Header().Set("Cache-Control", "no-store")
	out := struct {
		agentJSON
		ClientSecret string `json:"client_secret,omitempty"`
		PrivateKey   string `json:"private_key,omitempty"`
	}{detail(res.Agent), res.ClientSecret, res.PrivateKeyPEM}
	return c.JSON(http.StatusCreated, out)
}

func (h *agentsHandler) get(c echo.Context) error {
	a, err := h.allowAgent(c, c.Param("id"), authz.ViewAgents)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, detail(a))
}

var statuses = []string{store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusRevoked, store.StatusDecommissioned}

func (h *agentsHandler) list(c echo.Context) error {
	q := c.QueryParams()
	var fields []lifecycle.FieldError
	for name := range q {
		switch name {
		case "namespace", "owner", "status", "limit", "cursor":
			if len(q[name]) > 1 {
				fields = append(fields, lifecycle.FieldError{Field: name, Detail: "is repeated"})
			}
		default:
			fields = append(fields, lifecycle.FieldError{Field: name, Detail: "is not a known query parameter"})
		}
	}
	f := store.AgentFilter{Namespace: q.Get("namespace"), Owner: q.Get("owner"), Status: q.Get("status"), After: q.Get("cursor")}
	if f.Status != "" && !slices.Contains(statuses, f.Status) {
		fields = append(fields, lifecycle.FieldError{Field: "status", Detail: "must be one of " + strings.Join(statuses, ", ")})
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			fields = append(fields, lifecycle.FieldError{Field: "limit", Detail: "must be an integer from 1 to 500"})
		}
		f.Limit = n
	}
	if len(fields) > 0 {
		return &lifecycle.ValidationError{Fields: fields}
	}
	if all, scope := authz.FromContext(c.Request().Context()).Scope(authz.ViewAgents); !all {
		if f.Namespace != "" && !slices.Contains(scope, f.Namespace) {
			return allow(c, authz.ViewAgents, f.Namespace)
		}
		f.Namespaces = scope
	}
	list, next, err := h.svc.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	items := make([]agentJSON, len(list))
	for i := range list {
		items[i] = renderAgent(&list[i], nil, nil)
	}
	return c.JSON(http.StatusOK, struct {
		Items      []agentJSON `json:"items"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{items, next})
}

func (h *agentsHandler) patch(c echo.Context) error {
	var req lifecycle.PatchRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	id := c.Param("id")
	if _, err := h.allowAgent(c, id, authz.UpdateAgents); err != nil {
		return err
	}
	a, err := h.svc.Patch(c.Request().Context(), actor(c), id, req)
	if err != nil {
		return agentErr(id, err)
	}
	return c.JSON(http.StatusOK, detail(a))
}

// reasonBody is the optional body of a lifecycle action.
type reasonBody struct {
	Reason string `json:"reason"`
}

func (h *agentsHandler) transition(c echo.Context) error {
	id := c.Param("id")
	action, ok := lifecycle.ParseAction(c.Param("action"))
	if !ok {
		return newProblem(http.StatusNotFound, "not-found", fmt.Sprintf("no action %q; use activate, suspend, resume, revoke or decommission", c.Param("action")))
	}
	var body reasonBody
	if c.Request().ContentLength != 0 {
		if err := decodeStrict(c, &body); err != nil {
			return err
		}
	}
	perm, _ := authz.ActionPermission(string(action))
	if _, err := h.allowAgent(c, id, perm); err != nil {
		return err
	}
	a, err := h.svc.Transition(c.Request().Context(), actor(c), id, action, body.Reason)
	if err != nil {
		return agentErr(id, err)
	}
	return c.JSON(http.StatusOK, detail(a))
}

func (h *agentsHandler) rotate(c echo.Context) error {
	id := c.Param("id")
	var req lifecycle.RotateRequest
	if c.Request().ContentLength != 0 {
		if err := decodeStrict(c, &req); err != nil {
			return err
		}
	}
	if _, err := h.allowAgent(c, id, authz.RotateCredentials); err != nil {
		return err
	}
	res, err := h.svc.RotateCredential(c.Request().Context(), actor(c), id, req)
	if err != nil {
		return agentErr(id, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, struct {
		Agent        agentJSON `json:"agent"`
		ClientSecret string    `json:"client_secret,omitempty"`
		PrivateKey   string    `json:"private_key,omitempty"`
		GraceUntil   time.Time `json:"grace_until"`
		RotationID   string    `json:"rotation_id,omitempty"`
	}{detail(res.Agent), res.ClientSecret, res.PrivateKeyPEM, res.GraceUntil, res.RotationID})
}

func agentErr(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		p := newProblem(http.StatusNotFound, "not-found", fmt.Sprintf("agent %q not found", id))
		return p
	}
	return err
}
