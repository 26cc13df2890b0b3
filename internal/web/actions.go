package web

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// actionSpec describes a lifecycle action of the agent page.
type actionSpec struct {
	label   string
	perm    authz.Permission
	from    []string
	class   string // "danger" for irreversible actions
	warning string
}

var actionOrder = []string{"activate", "suspend", "resume", "rotate", "revoke", "decommission"}

var actions = map[string]actionSpec{
	"activate": {label: "Activate", perm: mustPermission("activate"), from: []string{store.StatusPending},
		warning: "The agent will be able to get tokens."},
	"suspend": {label: "Suspend", perm: mustPermission("suspend"), from: []string{store.StatusActive},
		warning: "The agent gets no new token, and every token it holds fails introspection at once. Resuming later does not revive those tokens."},
	"resume": {label: "Resume", perm: mustPermission("resume"), from: []string{store.StatusSuspended},
		warning: "The agent will be able to get tokens again."},
	"rotate": {label: "Rotate credential", perm: mustPermission("rotate"), from: []string{store.StatusPending, store.StatusActive, store.StatusSuspended},
		warning: "A new credential becomes active; the current one keeps working until the end of the grace period."},
	"revoke": {label: "Revoke", perm: mustPermission("revoke"), from: []string{store.StatusActive, store.StatusSuspended}, class: "danger",
		warning: "Revocation is permanent: the agent never gets a token again and its tokens fail introspection at once."},
	"decommission": {label: "Decommission", perm: mustPermission("decommission"), from: []string{store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusRevoked}, class: "danger",
		warning: "Decommissioning is permanent: the agent's credentials are destroyed. The record stays for the audit trail."},
}

func (s actionSpec) allowedFrom(status string) bool { return slices.Contains(s.from, status) }

type confirmView struct {
	A       *lifecycle.Agent
	Action  string
	Label   string
	Class   string
	Warning string
	Reason  string
	Grace   string
	Errors  []lifecycle.FieldError
	// Rotation of a private_key_jwt agent needs a new public key set.
	NeedsJWKS bool
}

func (h *Handler) actionFor(c echo.Context) (*lifecycle.Agent, string, actionSpec, error) {
	name := c.Param("action")
	spec, ok := actions[name]
	if !ok {
		return nil, "", spec, errNotFound
	}
	a, err := h.loadAgent(c, spec.perm)
	if err != nil {
		return nil, "", spec, err
	}
	return a, name, spec, nil
}

func (h *Handler) confirmAction(c echo.Context) error {
	a, name, spec, err := h.actionFor(c)
	if err != nil {
		return err
	}
	if !spec.allowedFrom(a.Status) {
		return &lifecycle.TransitionError{Action: name, From: a.Status}
	}
	return h.showConfirm(c, http.StatusOK, a, name, spec, "", "", nil)
}

func (h *Handler) showConfirm(c echo.Context, status int, a *lifecycle.Agent, name string, spec actionSpec, reason, grace string, errs []lifecycle.FieldError) error {
	cv := confirmView{A: a, Action: name, Label: spec.label, Class: spec.class, Warning: spec.warning, Reason: reason,
		Grace: grace, Errors: errs, NeedsJWKS: name == "rotate" && a.CredentialType == store.CredentialPrivateKeyJWT}
	return h.render(c, status, "confirm", h.newView(c, spec.label+" "+a.Name, "agents", cv))
}

type rotatedView struct {
	A          *lifecycle.Agent
	Secret     string
	PrivateJWK string
	GraceUntil string
}

// doAction runs a confirmed action. The reason is required here (the API keeps it
// optional for scripts) and lands in the audit event.
func (h *Handler) doAction(c echo.Context) error {
	a, name, spec, err := h.actionFor(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	actor := authz.FromContext(ctx).Actor()
	reason := strings.TrimSpace(strings.ReplaceAll(c.FormValue("reason"), "\r\n", "\n"))
	grace := strings.TrimSpace(c.FormValue("grace"))
	if reason == "" {
		return h.showConfirm(c, http.StatusBadRequest, a, name, spec, reason, grace,
			[]lifecycle.FieldError{{Field: "reason", Detail: "is required: say why, for the audit log"}})
	}
	if name != "rotate" {
		act, _ := lifecycle.ParseAction(name)
		if _, err := h.d.Lifecycle.Transition(ctx, actor, a.ID, act, reason); err != nil {
			if fe := fieldErrors(err); fe != nil {
				return h.showConfirm(c, http.StatusBadRequest, a, name, spec, reason, grace, fe)
			}
			return err
		}
		return c.Redirect(http.StatusSeeOther, "/ui/agents/"+a.ID)
	}
	req := lifecycle.RotateRequest{Grace: grace, Reason: reason}
	var privateJWK string
	if a.CredentialType == store.CredentialPrivateKeyJWT {
		jwks, priv, errs := readKeyChoice(c, a.TokenAlg)
		if errs != nil {
			return h.showConfirm(c, http.StatusBadRequest, a, name, spec, reason, grace, errs)
		}
		req.JWKS, privateJWK = jwks, priv
	}
	res, err := h.d.Lifecycle.RotateCredential(ctx, actor, a.ID, req)
	if err != nil {
		if fe := fieldErrors(err); fe != nil {
			return h.showConfirm(c, http.StatusBadRequest, a, name, spec, reason, grace, fe)
		}
		return err
	}
	if res.ClientSecret == "" && privateJWK == "" {
		return c.Redirect(http.StatusSeeOther, "/ui/agents/"+a.ID)
	}
	// The new secret or private key is in this response only: Lanyard keeps a hash or
	// the public key. no-store keeps it out of the browser's cache.
	return h.render(c, http.StatusOK, "rotated", h.newView(c, "Credential rotated", "agents",
		rotatedView{A: res.Agent, Secret: res.ClientSecret, PrivateJWK: privateJWK, GraceUntil: res.GraceUntil.Format("2006-01-02 15:04 UTC")}))
}

func mustPermission(action string) authz.Permission {
	p, ok := authz.ActionPermission(action)
	if !ok {
		panic("web: no permission for action " + action)
	}
	return p
}
