package web

import (
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/store"
)

const auditPageSize = 100

type auditView struct {
	Type, Outcome, AgentID string
	Events                 []auditRow
	Next, First            string
	Problems               []string
	// Verified is false when the chain was not verified in this view (a long log, until
	// the user asks); Verify is meaningful only when it is true.
	Verified   bool
	Verify     audit.Report
	VerifyHead string
	VerifyTook string
	Length     int64
}

// autoVerifyMax is the longest log the audit page verifies on every view; longer logs
// are verified when the user asks (it reads every event).
var autoVerifyMax int64 = 50000

// auditPage lists events newest first with the chain's verification status. The whole
// log is fleet-wide, so it needs an unscoped viewer role; scoped users see each agent's
// trail on its page.
func (h *Handler) auditPage(c echo.Context) error {
	ctx := c.Request().Context()
	if err := authz.Check(ctx, authz.ViewAudit, ""); err != nil {
		return err
	}
	q := c.QueryParams()
	av := auditView{Type: strings.TrimSpace(q.Get("type")), Outcome: q.Get("outcome"), AgentID: strings.TrimSpace(q.Get("agent_id"))}
	f := store.AuditFilter{Type: av.Type, Outcome: av.Outcome, AgentID: av.AgentID, Limit: auditPageSize + 1}
	if av.Outcome != "" && av.Outcome != "success" && av.Outcome != "failure" {
		av.Problems = append(av.Problems, "Outcome must be success or failure.")
		f.Outcome, av.Outcome = "", ""
	}
	if !cleanText(av.Type + av.AgentID) {
		av.Problems = append(av.Problems, "The filter contains characters no event can hold.")
		f = store.AuditFilter{Limit: auditPageSize + 1}
	}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			av.Problems = append(av.Problems, "That page cursor is not valid; showing the newest events.")
		} else {
			f.AfterSeq = n
		}
	}
	evs, err := h.d.Store.RecentAudit(ctx, f)
	if err != nil {
		return err
	}
	base := url.Values{}
	for k, v := range map[string]string{"type": av.Type, "outcome": av.Outcome, "agent_id": av.AgentID} {
		if v != "" {
			base.Set(k, v)
		}
	}
	if len(evs) > auditPageSize {
		evs = evs[:auditPageSize]
		nq := url.Values{}
		for k, v := range base {
			nq[k] = v
		}
		nq.Set("before", strconv.FormatInt(evs[len(evs)-1].Seq, 10))
		av.Next = "/ui/audit?" + nq.Encode()
	}
	if f.AfterSeq > 0 {
		av.First = "/ui/audit?" + base.Encode()
	}
	av.Events = h.auditRows(evs)
	head, err := h.d.Store.AuditHead(ctx)
	if err != nil {
		return err
	}
	av.Length = head.Seq
	if head.Seq <= autoVerifyMax || q.Get("verify") == "1" {
		start := time.Now()
		if av.Verify, err = audit.Verify(ctx, h.d.Store, 1000); err != nil {
			return err
		}
		av.Verified = true
		av.VerifyTook = time.Since(start).Round(time.Millisecond).String()
		av.VerifyHead = hex.EncodeToString(av.Verify.Head)
	}
	return h.render(c, 200, "audit", h.newView(c, "Audit log", "audit", av))
}
