// Package authz decides who may do what. A Principal (the signed-in user of the web UI,
// or the caller of the /v1 API) holds Grants: a Role, optionally limited to a list of
// namespaces. Handlers of the UI and of the API ask the same question —
// Check(ctx, permission, namespace) — so a rule is written once.
//
// Roles:
//   - viewer: read agents, attestations and the audit log.
//   - operator: viewer, plus suspend, resume and rotate credentials.
//   - admin: everything: register, activate, update, revoke, decommission, settings.
//   - approver: viewer, plus approving just-in-time elevation (reserved: no
//     elevation workflow exists yet, so the permission guards nothing today).
//
// A grant limited to namespaces applies only to agents in those namespaces; a grant
// without namespaces applies everywhere.
package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Role is a named set of permissions.
type Role string

// The roles.
const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
	Admin    Role = "admin"
	Approver Role = "approver"
)

// Roles lists every role, weakest first.
var Roles = []Role{Viewer, Operator, Approver, Admin}

// Permission is one kind of action.
type Permission string

// The permissions.
const (
	ViewAgents        Permission = "view agents"
	ViewAudit         Permission = "view the audit log"
	RegisterAgents    Permission = "register agents"
	UpdateAgents      Permission = "update agents"
	ActivateAgents    Permission = "activate agents"
	SuspendAgents     Permission = "suspend and resume agents"
	RotateCredentials Permission = "rotate credentials"
	RevokeAgents      Permission = "revoke agents"
	Decommission      Permission = "decommission agents"
	ManageSettings    Permission = "manage settings"
	ApproveElevation  Permission = "approve elevation"
)

var rolePermissions = map[Role][]Permission{
	Viewer:   {ViewAgents, ViewAudit},
	Operator: {ViewAgents, ViewAudit, SuspendAgents, RotateCredentials},
	Approver: {ViewAgents, ViewAudit, ApproveElevation},
	Admin: {ViewAgents, ViewAudit, RegisterAgents, UpdateAgents, ActivateAgents, SuspendAgents,
		RotateCredentials, RevokeAgents, Decommission, ManageSettings},
}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, bool) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	_, ok := rolePermissions[r]
	return r, ok
}

// Allows reports whether the role carries perm.
func (r Role) Allows(perm Permission) bool { return slices.Contains(rolePermissions[r], perm) }

// Grant is a role, everywhere (Namespaces empty) or in the listed namespaces.
type Grant struct {
	Role       Role     `json:"role"`
	Namespaces []string `json:"namespaces,omitempty"`
}

func (g Grant) String() string {
	if len(g.Namespaces) == 0 {
		return string(g.Role)
	}
	return string(g.Role) + " in " + strings.Join(g.Namespaces, ", ")
}

// covers reports whether the grant applies to namespace ("" means "every namespace",
// which only an unscoped grant covers).
func (g Grant) covers(namespace string) bool {
	if len(g.Namespaces) == 0 {
		return true
	}
	return namespace != "" && slices.Contains(g.Namespaces, namespace)
}

// Principal is an authenticated caller.
type Principal struct {
	// Subject identifies the caller uniquely: "admin" for the bootstrap admin token,
	// "oidc:<issuer>#<sub>" for a single sign-on user.
	Subject string `json:"subject"`
	// Name is what the UI shows and what the audit log records as the actor.
	Name string `json:"name"`
	// Method is how the caller signed in: "admin-token" or "oidc".
	Method string `json:"method"`
	// Tenant is the Entra tenant id (tid) of an Entra user, else "".
	Tenant string  `json:"tenant,omitempty"`
	Grants []Grant `json:"grants"`
}

// BootstrapAdmin is the principal of the bootstrap admin token: admin everywhere.
func BootstrapAdmin() *Principal {
	return &Principal{Subject: "admin", Name: "admin", Method: "admin-token", Grants: []Grant{{Role: Admin}}}
}

// Actor is the principal as the audit log names it: "admin" for the bootstrap token
// (unchanged from before single sign-on existed), "user:<name>" for everyone else.
func (p *Principal) Actor() string {
	if p.Method == "admin-token" {
		return "admin"
	}
	return "user:" + p.Name
}

// Can reports whether p may exercise perm on an agent in namespace. namespace "" asks
// about every namespace at once (for example registering into a namespace not yet
// chosen, or listing the whole fleet): only an unscoped grant allows that.
func (p *Principal) Can(perm Permission, namespace string) bool {
	if p == nil {
		return false
	}
	for _, g := range p.Grants {
		if g.Role.Allows(perm) && g.covers(namespace) {
			return true
		}
	}
	return false
}

// CanSomewhere reports whether p may exercise perm in at least one namespace.
func (p *Principal) CanSomewhere(perm Permission) bool {
	if p == nil {
		return false
	}
	for _, g := range p.Grants {
		if g.Role.Allows(perm) {
			return true
		}
	}
	return false
}

// Scope returns where p may exercise perm: all is true when everywhere, else
// namespaces lists the namespaces (empty: nowhere).
func (p *Principal) Scope(perm Permission) (all bool, namespaces []string) {
	if p == nil {
		return false, nil
	}
	for _, g := range p.Grants {
		if !g.Role.Allows(perm) {
			continue
		}
		if len(g.Namespaces) == 0 {
			return true, nil
		}
		for _, ns := range g.Namespaces {
			if !slices.Contains(namespaces, ns) {
				namespaces = append(namespaces, ns)
			}
		}
	}
	slices.Sort(namespaces)
	return false, namespaces
}

// RoleNames lists p's grants for display.
func (p *Principal) RoleNames() []string {
	out := make([]string, len(p.Grants))
	for i, g := range p.Grants {
		out[i] = g.String()
	}
	return out
}

// DeniedError is a refused action (HTTP 403). Its message names the permission and
// namespace so the user learns what to ask for.
type DeniedError struct {
	Principal  string
	Permission Permission
	Namespace  string
}

func (e *DeniedError) Error() string {
	where := "in every namespace"
	if e.Namespace != "" {
		where = fmt.Sprintf("in namespace %q", e.Namespace)
	}
	return fmt.Sprintf("authz: %s may not %s %s", e.Principal, e.Permission, where)
}

// Detail is the message shown to the caller.
func (e *DeniedError) Detail() string { return strings.TrimPrefix(e.Error(), "authz: ") }

// UnauthenticatedError is a request without a principal (HTTP 401).
type UnauthenticatedError struct{}

func (UnauthenticatedError) Error() string { return "authz: not signed in" }

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal of the request, or nil.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}

// Check returns nil when the request's principal may exercise perm in namespace, an
// UnauthenticatedError when there is no principal, and a *DeniedError otherwise.
func Check(ctx context.Context, perm Permission, namespace string) error {
	p := FromContext(ctx)
	if p == nil {
		return UnauthenticatedError{}
	}
	if !p.Can(perm, namespace) {
		return &DeniedError{Principal: p.Name, Permission: perm, Namespace: namespace}
	}
	return nil
}

// ActionPermission is the permission a lifecycle action (the /v1 action names, plus
// "rotate" for credential rotation) needs.
func ActionPermission(action string) (Permission, bool) {
	p, ok := map[string]Permission{
		"activate": ActivateAgents, "suspend": SuspendAgents, "resume": SuspendAgents,
		"revoke": RevokeAgents, "decommission": Decommission, "rotate": RotateCredentials,
	}[action]
	return p, ok
}
