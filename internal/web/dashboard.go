package web

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

type dashView struct {
	// Scoped is true for a principal who may see only some namespaces: fleet-wide
	// figures would reveal other namespaces, so the dashboard shows only links.
	Scoped     bool
	Namespaces []string

	Total, Active         int64
	ByStatus, ByNamespace barChart
	ByRisk                barChart
	Attested              int64
	AttestedPct           int
	Stale                 int64
	CompliantPct          int
	RotationDays          int
	IssuedHour            int64
	RefusedHour           int64
	Trend                 columnChart
	Refusals              []auditRow
}

// trendBuckets × trendStep is the window of the token trend plot.
const (
	trendBuckets = 12
	trendStep    = 5 * time.Minute
)

func (h *Handler) dashboard(c echo.Context) error {
	p := authz.FromContext(c.Request().Context())
	if all, ns := p.Scope(authz.ViewAgents); !all {
		return h.render(c, 200, "dashboard", h.newView(c, "Dashboard", "dashboard", dashView{Scoped: true, Namespaces: ns}))
	}
	ctx := c.Request().Context()
	now := h.o.Now().UTC()
	var (
		dv                         = dashView{RotationDays: int(h.o.RotationMaxAge / (24 * time.Hour))}
		byStatus, byNS, byRisk     map[string]int64
		issued, refused            [trendBuckets]int64
		attested, stale, refusedHr int64
		refusals                   []store.AuditEvent
	)
	st := h.d.Store
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	g.Go(func() (err error) { byStatus, err = st.CountAgentsBy(gctx, "status"); return })
	g.Go(func() (err error) { byNS, err = st.CountAgentsBy(gctx, "namespace"); return })
	g.Go(func() (err error) { byRisk, err = st.CountAgentsBy(gctx, "risk_level"); return })
	g.Go(func() (err error) { attested, err = st.CountAttested(gctx, now); return })
	g.Go(func() (err error) { stale, err = st.CountStaleCredentials(gctx, now.Add(-h.o.RotationMaxAge)); return })
	g.Go(func() (err error) {
		refusals, err = st.RecentAudit(gctx, store.AuditFilter{Type: "token.refused", Limit: 10})
		return
	})
	start := now.Truncate(trendStep).Add(-(trendBuckets - 1) * trendStep)
	for i := range trendBuckets {
		from, to := start.Add(time.Duration(i)*trendStep), start.Add(time.Duration(i+1)*trendStep)
		g.Go(func() (err error) { issued[i], err = st.CountAudit(gctx, "token.issued", from, to); return })
		g.Go(func() (err error) { refused[i], err = st.CountAudit(gctx, "token.refused", from, to); return })
	}
	g.Go(func() (err error) {
		refusedHr, err = st.CountAudit(gctx, "token.refused", now.Add(-time.Hour), now.Add(time.Second))
		return
	})
	g.Go(func() (err error) {
		dv.IssuedHour, err = st.CountAudit(gctx, "token.issued", now.Add(-time.Hour), now.Add(time.Second))
		return
	})
	if err := g.Wait(); err != nil {
		return err
	}
	dv.RefusedHour = refusedHr
	for _, n := range byStatus {
		dv.Total += n
	}
	dv.Active = byStatus[store.StatusActive]
	dv.ByStatus = newBarChart("Agents by status", ordered(byStatus, []string{store.StatusActive, store.StatusPending, store.StatusSuspended, store.StatusRevoked, store.StatusDecommissioned}), "/ui/agents?status=")
	dv.ByRisk = newBarChart("Agents by risk level", ordered(byRisk, lifecycle.RiskLevels), "/ui/agents?risk=")
	dv.ByNamespace = newBarChart("Agents by namespace (top 10)", topN(byNS, 10), "/ui/agents?namespace=")
	dv.Attested, dv.Stale = attested, stale
	dv.AttestedPct = pct(attested, dv.Active)
	dv.CompliantPct = 100
	if dv.Active > 0 {
		dv.CompliantPct = pct(dv.Active-stale, dv.Active)
	}
	labels := make([]string, trendBuckets)
	for i := range labels {
		labels[i] = start.Add(time.Duration(i) * trendStep).Format("15:04")
	}
	dv.Trend = newColumnChart("Tokens per 5 minutes, last hour (UTC)", labels, issued[:], refused[:])
	dv.Refusals = h.auditRows(refusals)
	return h.render(c, 200, "dashboard", h.newView(c, "Dashboard", "dashboard", dv))
}

func pct(n, of int64) int {
	if of <= 0 {
		return 0
	}
	return int(n * 100 / of)
}

type kv struct {
	Key   string
	Value int64
}

// ordered lists counts in the given key order, then any other keys sorted.
func ordered(m map[string]int64, order []string) []kv {
	var out []kv
	for _, k := range order {
		out = append(out, kv{k, m[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(order, k) {
			out = append(out, kv{k, m[k]})
		}
	}
	return out
}

// topN lists the n largest counts, largest first.
func topN(m map[string]int64, n int) []kv {
	var out []kv
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	slices.SortFunc(out, func(a, b kv) int { return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(a.Key, b.Key)) })
	if len(out) > n {
		out = out[:n]
	}
	return out
}
