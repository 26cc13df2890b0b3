package web

import (
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/rotation"
	"github.com/lanyardhq/lanyard/internal/store"
)

var statuses = []string{store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusRevoked, store.StatusDecommissioned}

// fleetPage is the fleet list's page size.
const fleetPage = 50

type listView struct {
	Q, Namespace, Owner, Status, Risk string
	Namespaces                        []string
	Statuses, Risks                   []string
	Agents                            []store.Agent
	Next                              string // URL of the next page, "" on the last
	First                             string // URL of the first page when not on it
	Filtered                          bool
	Problems                          []string
	CanRegister                       bool
}

func (h *Handler) agentList(c echo.Context) error {
	ctx := c.Request().Context()
	p := authz.FromContext(ctx)
	q := c.QueryParams()
	lv := listView{Q: strings.TrimSpace(q.Get("q")), Namespace: q.Get("namespace"), Owner: q.Get("owner"),
		Status: q.Get("status"), Risk: q.Get("risk"), Statuses: statuses, Risks: lifecycle.RiskLevels,
		CanRegister: p.CanSomewhere(authz.RegisterAgents)}
	lv.Filtered = lv.Q != "" || lv.Namespace != "" || lv.Owner != "" || lv.Status != "" || lv.Risk != ""
	f := store.AgentFilter{NameContains: lv.Q, Namespace: lv.Namespace, Owner: lv.Owner, Status: lv.Status,
		RiskLevel: lv.Risk, After: q.Get("cursor"), Limit: fleetPage}
	if f.Status != "" && !slices.Contains(statuses, f.Status) {
		lv.Problems = append(lv.Problems, "Unknown status "+f.Status+".")
		f.Status, lv.Status = "", ""
	}
	if f.RiskLevel != "" && !slices.Contains(lifecycle.RiskLevels, f.RiskLevel) {
		lv.Problems = append(lv.Problems, "Unknown risk level "+f.RiskLevel+".")
		f.RiskLevel, lv.Risk = "", ""
	}
	if len(lv.Q) > 128 || !cleanText(lv.Q+lv.Namespace+lv.Owner+f.After) {
		lv.Problems = append(lv.Problems, "The search contains characters no agent name can hold.")
		f = store.AgentFilter{Limit: fleetPage}
	}
	all, scope := p.Scope(authz.ViewAgents)
	if all {
		counts, err := h.d.Store.CountAgentsBy(ctx, "namespace")
		if err != nil {
			return err
		}
		lv.Namespaces = slices.Sorted(maps.Keys(counts))
	} else {
		lv.Namespaces = scope
		if f.Namespace != "" && !slices.Contains(scope, f.Namespace) {
			return &authz.DeniedError{Principal: p.Name, Permission: authz.ViewAgents, Namespace: f.Namespace}
		}
		f.Namespaces = scope
	}
	list, next, err := h.d.Lifecycle.List(ctx, f)
	if err != nil {
		return err
	}
	lv.Agents = list
	base := url.Values{}
	for k, v := range map[string]string{"q": lv.Q, "namespace": lv.Namespace, "owner": lv.Owner, "status": lv.Status, "risk": lv.Risk} {
		if v != "" {
			base.Set(k, v)
		}
	}
	if next != "" {
		nq := maps.Clone(base)
		nq.Set("cursor", next)
		lv.Next = "/ui/agents?" + nq.Encode()
	}
	if f.After != "" {
		lv.First = "/ui/agents?" + base.Encode()
	}
	return h.render(c, 200, "agents", h.newView(c, "Agents", "agents", lv))
}

// agentView is the agent page.
type agentView struct {
	A            *lifecycle.Agent
	Reference    *lifecycle.Reference
	Credentials  []credentialRow
	Attestations []attestRow
	Issued       []auditRow
	Refused      []auditRow
	Trail        []auditRow
	Actions      []actionLink
	RotationDays int
	// Rotation is the scheduler's view (nil without a rotation engine).
	Rotation *rotation.CredentialStatus
	// Federated are the agent's federated credentials (an external issuer's tokens).
	Federated []store.Credential
	// CanFederate is true when the viewer may edit the Federation panel.
	CanFederate bool
}

type credentialRow struct {
	store.Credential
	KIDs    []string
	AgeDays int
	Overdue bool
}

type attestRow struct {
	attest.Result
	Current bool
}

type actionLink struct {
	Action, Label, Class string
}

type auditRow struct {
	store.AuditEvent
	Detail map[string]any
}

func (h *Handler) auditRows(evs []store.AuditEvent) []auditRow {
	out := make([]auditRow, len(evs))
	for i, e := range evs {
		out[i].AuditEvent = e
		if len(e.Data) > 0 {
			_ = json.Unmarshal(e.Data, &out[i].Detail)
		}
	}
	return out
}

// loadAgent returns the agent if the principal may exercise perm in its namespace.
// Agents the principal may not see are reported as not found, so their existence does
// not leak to scoped users.
func (h *Handler) loadAgent(c echo.Context, perm authz.Permission) (*lifecycle.Agent, error) {
	ctx := c.Request().Context()
	id := c.Param("id")
	if !strings.HasPrefix(id, "agt_") || !cleanText(id) || len(id) > 64 {
		return nil, errNotFound
	}
	a, err := h.d.Lifecycle.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := authz.Check(ctx, authz.ViewAgents, a.Namespace); err != nil {
		return nil, errNotFound
	}
	if err := authz.Check(ctx, perm, a.Namespace); err != nil {
		return nil, err
	}
	return a, nil
}

func (h *Handler) agentPage(c echo.Context) error {
	a, err := h.loadAgent(c, authz.ViewAgents)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	now := h.o.Now().UTC()
	av := agentView{A: a, Reference: a.Reference, RotationDays: int(h.o.RotationMaxAge / (24 * time.Hour))}
	for _, cr := range a.Credentials {
		row := credentialRow{Credential: cr, AgeDays: int(now.Sub(cr.CreatedAt) / (24 * time.Hour))}
		row.Overdue = cr.State == store.CredentialActive && now.Sub(cr.CreatedAt) > h.o.RotationMaxAge
		if len(cr.JWKS) > 0 {
			var set jose.JSONWebKeySet
			if json.Unmarshal(cr.JWKS, &set) == nil {
				for _, k := range set.Keys {
					row.KIDs = append(row.KIDs, k.KeyID)
				}
			}
		}
		av.Credentials = append(av.Credentials, row)
	}
	for _, cr := range a.Credentials {
		if cr.Type == store.CredentialFederated {
			av.Federated = append(av.Federated, cr)
		}
	}
	if h.d.Rotation != nil && a.CredentialType != store.CredentialFederated {
		if av.Rotation, err = h.d.Rotation.AgentStatus(ctx, a.ID, a.Credentials); err != nil {
			return err
		}
	}
	results, err := h.d.Attest.List(ctx, a.ID, 10)
	if err != nil {
		return err
	}
	for _, r := range results {
		av.Attestations = append(av.Attestations, attestRow{Result: r, Current: r.Status == store.AttestationAffirming && now.Before(r.ExpiresAt)})
	}
	for _, q := range []struct {
		f   store.AuditFilter
		dst *[]auditRow
	}{
		{store.AuditFilter{AgentID: a.ID, Type: "token.issued", Limit: 10}, &av.Issued},
		{store.AuditFilter{AgentID: a.ID, Type: "token.refused", Limit: 10}, &av.Refused},
		{store.AuditFilter{AgentID: a.ID, Limit: 50}, &av.Trail},
	} {
		evs, err := h.d.Store.RecentAudit(ctx, q.f)
		if err != nil {
			return err
		}
		*q.dst = h.auditRows(evs)
	}
	p := authz.FromContext(ctx)
	av.CanFederate = p.Can(authz.UpdateAgents, a.Namespace)
	for _, act := range actionOrder {
		spec := actions[act]
		if act == "rotate" && a.CredentialType == store.CredentialFederated {
			continue // nothing to rotate: the external issuer's keys are its own
		}
		if spec.allowedFrom(a.Status) && p.Can(spec.perm, a.Namespace) {
			av.Actions = append(av.Actions, actionLink{Action: act, Label: spec.label, Class: spec.class})
		}
	}
	return h.render(c, 200, "agent", h.newView(c, a.Name, "agents", av))
}

// cleanText refuses NUL and invalid UTF-8, which no identifier or filter can contain
// (and which PostgreSQL would reject with an error rather than a miss).
func cleanText(s string) bool { return utf8.ValidString(s) && !strings.Contains(s, "\x00") }
