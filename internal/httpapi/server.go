// Package httpapi is Lanyard's HTTP surface: the /v1 admin API (RFC 9457 problem
// documents, strict JSON, admin bearer authentication), the OAuth endpoints served by
// package oauth, health, readiness and Prometheus metrics. Handlers decode, validate and
// call the domain services; no rule lives here.
package httpapi

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/federation"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/oauth"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/rotation"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Deps are the services the HTTP layer calls.
type Deps struct {
	Lifecycle *lifecycle.Service
	OAuth     *oauth.Provider
	Attest    *attest.Service
	// Issuer is the base of the endpoint URLs accepted as client assertion audiences.
	Issuer   string
	Admin    oauth.AdminChecker
	Audit    *audit.Log
	AuditLog store.AuditLog
	// Ready checks are run by /readyz; each returns nil when its dependency is reachable.
	Ready map[string]func(context.Context) error
	// Degraded checks are run by /readyz too, but a failure reports the dependency as
	// "degraded" without making the server unready: the server keeps serving from what
	// it holds in memory (the secrets backend: tokens are signed with in-memory keys).
	Degraded map[string]func(context.Context) error
	// Rotation, if set, serves the rotation status and schedule endpoints.
	Rotation *rotation.Engine
	// Gatherer serves /metrics; Registerer receives the HTTP metrics.
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	// TPMEnrolments serves TPM attestation key enrolment; nil leaves it unmounted.
	TPMEnrolments *attest.Enrolments
	// Federation serves /v1/federation; nil leaves it out.
	Federation *federation.Service
	// UI, when set, mounts the web UI (package web) under /ui.
	UI interface{ Mount(e *echo.Echo) }
}

// Options tune the HTTP layer.
type Options struct {
	// MaxBodyBytes limits every request body.
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// New returns the HTTP handler of the whole server.
func New(d Deps, o Options) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(o.Logger)
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lanyard_http_request_duration_seconds",
		Help:    "HTTP request latency by route, method and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method", "code"})
	if d.Registerer != nil {
		d.Registerer.MustRegister(dur)
	}
	e.Use(requestContext(o.Logger, o.MaxBodyBytes, dur))

	// Public OAuth surface.
	wrap := func(f http.HandlerFunc) echo.HandlerFunc { return echo.WrapHandler(f) }
	e.GET("/.well-known/openid-configuration", wrap(d.OAuth.Discovery))
	e.GET("/.well-known/oauth-authorization-server", wrap(d.OAuth.Discovery))
	e.GET("/oauth2/jwks", wrap(d.OAuth.JWKS))
	e.POST("/oauth2/token", wrap(d.OAuth.Token))
	e.POST("/oauth2/introspect", wrap(d.OAuth.Introspect))
	e.POST("/oauth2/revoke", wrap(d.OAuth.Revoke))

	// Operations.
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", readyz(d.Ready, d.Degraded, o.Logger))
	if d.Gatherer != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{})))
	}

	// Admin API.
	// Attestation: agents authenticate as at the token endpoint, so these routes sit
	// outside the admin group.
	ah := &attestHandler{svc: d.Attest, oauth: d.OAuth, issuer: d.Issuer}
	ah.MountAgent(e)
	v1 := e.Group("/v1", v1Request, adminOnly(d.Admin, d.Audit))
	(&agentsHandler{svc: d.Lifecycle}).Mount(v1)
	(&auditHandler{st: d.AuditLog}).Mount(v1)
	ah.MountAdmin(v1)
	if d.TPMEnrolments != nil {
		(&tpmHandler{svc: d.TPMEnrolments}).Mount(v1)
	}
	if d.Rotation != nil {
		(&rotationHandler{eng: d.Rotation, svc: d.Lifecycle, audit: d.Audit}).Mount(v1)
	}
	if d.Federation != nil {
		(&federationHandler{fed: d.Federation, svc: d.Lifecycle, issuer: d.Issuer}).Mount(v1)
	}
	if d.UI != nil {
		d.UI.Mount(e)
	}
	return e
}

// requestContext gives every request an id (kept from X-Request-Id when well formed),
// limits its body, logs it and measures it.
func requestContext(log *slog.Logger, maxBody int64, dur *prometheus.HistogramVec) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			r := c.Request()
			id := r.Header.Get(requestid.Header)
			if !requestid.Valid(id) {
				id = requestid.New()
			}
			c.Response().Header().Set(requestid.Header, id)
			c.Response().Header().Set("X-Content-Type-Options", "nosniff")
			r = r.WithContext(requestid.With(r.Context(), id))
			r.Body = http.MaxBytesReader(c.Response(), r.Body, maxBody)
			c.SetRequest(r)

			err := next(c)
			if err != nil {
				c.Error(err)
			}
			status := c.Response().Status
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			dur.WithLabelValues(route, r.Method, strconv.Itoa(status)).Observe(elapsed.Seconds())
			level := slog.LevelDebug
			if strings.HasPrefix(route, "/v1") {
				level = slog.LevelInfo
			}
			if status >= 500 {
				level = slog.LevelError
			}
			log.Log(r.Context(), level, "http request", "method", r.Method, "route", route,
				"status", status, "duration_ms", float64(elapsed.Microseconds())/1000, "remote", c.RealIP())
			return nil
		}
	}
}

// v1Request sets no-store on every /v1 response and refuses URLs whose path or query
// holds NUL or invalid UTF-8, which no identifier or filter can contain (and which
// PostgreSQL would reject with an error, not a miss).
func v1Request(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		u := c.Request().URL
		bad := !cleanText(u.Path)
		for _, vs := range u.Query() {
			for _, v := range vs {
				bad = bad || !cleanText(v)
			}
		}
		if bad {
			return newProblem(http.StatusBadRequest, "malformed-url", "the URL contains NUL or invalid UTF-8")
		}
		return next(c)
	}
}

func cleanText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// adminOnly requires the admin bearer token on every request.
func adminOnly(admin oauth.AdminChecker, aud *audit.Log) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get("Authorization")
			if h == "" {
				return newProblem(http.StatusUnauthorized, "unauthenticated", "send the admin token as 'Authorization: Bearer <token>'")
			}
			if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
				return newProblem(http.StatusUnauthorized, "unauthenticated", "the Authorization header must use the Bearer scheme")
			}
			if !admin.CheckAdminToken(c.Request().Context(), strings.TrimSpace(h[7:])) {
				if err := aud.Enqueue(audit.Event{Type: "admin.auth_failed", Actor: "anonymous", Outcome: "failure",
					Reason: "admin token is not valid", RequestID: requestid.From(c.Request().Context()),
					Data: map[string]any{"method": c.Request().Method, "path": c.Request().URL.Path}}); err != nil {
					slog.ErrorContext(c.Request().Context(), "audit event lost", "type", "admin.auth_failed", "err", err)
				}
				return newProblem(http.StatusUnauthorized, "unauthenticated", "the admin token is not valid")
			}
			c.Set("actor", "admin")
			// The bootstrap admin token is admin everywhere; handlers ask authz.Check,
			// like the web UI, so a caller with narrower roles gets the same answers.
			c.SetRequest(c.Request().WithContext(authz.WithPrincipal(c.Request().Context(), authz.BootstrapAdmin())))
			return next(c)
		}
	}
}

func actor(c echo.Context) string {
	if a, ok := c.Get("actor").(string); ok {
		return a
	}
	return "unknown"
}

func readyz(checks, degradable map[string]func(context.Context) error, log *slog.Logger) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		out := map[string]string{}
		ok := true
		for name, check := range checks {
			if err := check(ctx); err != nil {
				out[name] = "unavailable"
				ok = false
				log.WarnContext(ctx, "readiness check failed", "check", name, "err", err)
			} else {
				out[name] = "ok"
			}
		}
		degraded := false
		for name, check := range degradable {
			if err := check(ctx); err != nil {
				out[name] = "degraded"
				degraded = true
				log.WarnContext(ctx, "readiness check degraded", "check", name, "err", err)
			} else {
				out[name] = "ok"
			}
		}
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		body := map[string]any{"ready": ok, "checks": out}
		if degraded {
			body["degraded"] = true
		}
		return c.JSON(status, body)
	}
}

// auditHandler serves /v1/audit.
type auditHandler struct{ st store.AuditLog }

func (h *auditHandler) Mount(g *echo.Group) {
	g.GET("/audit", h.list)
	g.GET("/audit/verify", h.verify)
}

type auditEventJSON struct {
	Seq       int64          `json:"seq"`
	ID        string         `json:"id"`
	Time      time.Time      `json:"time"`
	Type      string         `json:"type"`
	Actor     string         `json:"actor"`
	AgentID   string         `json:"agent_id,omitempty"`
	Namespace string         `json:"namespace,omitempty"`
	Outcome   string         `json:"outcome"`
	Reason    string         `json:"reason,omitempty"`
	Data      map[string]any `json:"data,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
	PrevHash  string         `json:"prev_hash"`
	Hash      string         `json:"hash"`
}

func (h *auditHandler) list(c echo.Context) error {
	if err := allow(c, authz.ViewAudit, ""); err != nil {
		return err
	}
	q := c.QueryParams()
	var fields []lifecycle.FieldError
	f := store.AuditFilter{AgentID: q.Get("agent_id"), Type: q.Get("type"), Outcome: q.Get("outcome")}
	for name := range q {
		switch name {
		case "agent_id", "type", "outcome", "since", "until", "cursor", "limit":
		default:
			fields = append(fields, lifecycle.FieldError{Field: name, Detail: "is not a known query parameter"})
		}
	}
	parseTime := func(name string, dst *time.Time) {
		if s := q.Get(name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				fields = append(fields, lifecycle.FieldError{Field: name, Detail: "must be an RFC 3339 time"})
			}
			*dst = t
		}
	}
	parseTime("since", &f.Since)
	parseTime("until", &f.Until)
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			fields = append(fields, lifecycle.FieldError{Field: "cursor", Detail: "is not a cursor from a previous page"})
		}
		f.AfterSeq = n
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			fields = append(fields, lifecycle.FieldError{Field: "limit", Detail: "must be an integer from 1 to 1000"})
		}
		limit = n
	}
	if o := f.Outcome; o != "" && o != "success" && o != "failure" {
		fields = append(fields, lifecycle.FieldError{Field: "outcome", Detail: "must be success or failure"})
	}
	if len(fields) > 0 {
		return &lifecycle.ValidationError{Fields: fields}
	}
	f.Limit = limit + 1
	evs, err := h.st.ListAudit(c.Request().Context(), f)
	if err != nil {
		return err
	}
	next := ""
	if len(evs) > limit {
		evs = evs[:limit]
		next = strconv.FormatInt(evs[limit-1].Seq, 10)
	}
	items := make([]auditEventJSON, len(evs))
	for i, e := range evs {
		items[i] = auditEventJSON{Seq: e.Seq, ID: e.ID, Time: e.Time, Type: e.Type, Actor: e.Actor, AgentID: e.AgentID,
			Namespace: e.Namespace, Outcome: e.Outcome, Reason: e.Reason, RequestID: e.RequestID,
			PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}
		if len(e.Data) > 0 {
			_ = json.Unmarshal(e.Data, &items[i].Data)
		}
	}
	return c.JSON(http.StatusOK, struct {
		Items      []auditEventJSON `json:"items"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}{items, next})
}

func (h *auditHandler) verify(c echo.Context) error {
	if err := allow(c, authz.ViewAudit, ""); err != nil {
		return err
	}
	rep, err := audit.Verify(c.Request().Context(), h.st, 1000)
	if err != nil {
		return err
	}
	out := map[string]any{"ok": rep.OK, "events": rep.Events, "head": hex.EncodeToString(rep.Head)}
	if rep.Broken != nil {
		out["broken"] = map[string]any{"seq": rep.Broken.Seq, "reason": rep.Broken.Reason, "detail": rep.Broken.Detail}
	}
	return c.JSON(http.StatusOK, out)
}
