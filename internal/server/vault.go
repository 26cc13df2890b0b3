package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/secrets/vault"
)

// secretsHealth turns secrets backend failures into metrics and audit events:
// lanyard_secrets_backend_errors_total{op} counts every failed operation,
// lanyard_secrets_backend_up is 0 from a failure until the next success, and each
// failure other than a readiness ping is an audit event (secrets.backend_error); pings
// are audited only when the backend goes down (secrets.backend_unavailable), so an
// outage does not write an event every few seconds. The recovery is audited too
// (secrets.backend_recovered).
type secretsHealth struct {
	log    *slog.Logger
	audit  atomic.Pointer[audit.Log] // set once the audit log exists
	errors *prometheus.CounterVec
	up     prometheus.Gauge
	down   atomic.Bool
}

func newSecretsHealth(log *slog.Logger, backend string) *secretsHealth {
	h := &secretsHealth{
		log: log,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanyard_secrets_backend_errors_total", Help: "Failed secrets backend operations by operation.",
			ConstLabels: prometheus.Labels{"backend": backend},
		}, []string{"op"}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lanyard_secrets_backend_up", Help: "1 when the last secrets backend operation succeeded, 0 after a failure.",
			ConstLabels: prometheus.Labels{"backend": backend},
		}),
	}
	h.up.Set(1)
	return h
}

func (h *secretsHealth) register(reg prometheus.Registerer) { reg.MustRegister(h.errors, h.up) }

// failed is vault.Config.OnError.
func (h *secretsHealth) failed(op string, err error) {
	h.errors.WithLabelValues(op).Inc()
	h.up.Set(0)
	wasDown := h.down.Swap(true)
	h.log.Warn("secrets backend operation failed", "op", op, "err", err)
	typ := "secrets.backend_error"
	if op == "ping" {
		if wasDown {
			return
		}
		typ = "secrets.backend_unavailable"
	}
	h.record(audit.Event{Type: typ, Actor: "system", Outcome: "failure", Reason: errorReason(err), Data: map[string]any{"op": op}})
}

// ok is called after a successful ping.
func (h *secretsHealth) ok() {
	h.up.Set(1)
	if h.down.Swap(false) {
		h.log.Info("secrets backend reachable again")
		h.record(audit.Event{Type: "secrets.backend_recovered", Actor: "system", Outcome: "success"})
	}
}

func (h *secretsHealth) record(e audit.Event) {
	if l := h.audit.Load(); l != nil {
		if err := l.Enqueue(e); err != nil {
			h.log.Error("audit secrets backend event", "type", e.Type, "err", err)
		}
	}
}

// errorReason is the audit reason of a backend failure: its class, not its text,
// which may carry URLs or request ids the audit log does not need.
func errorReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case err == nil:
		return ""
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"connection refused", "permission denied", "no such host", "certificate", "i/o timeout", "eof", "connection reset"} {
		if strings.Contains(msg, s) {
			return s
		}
	}
	return "error"
}

// openVault builds the Vault backend from cfg.Vault and logs in.
func openVault(ctx context.Context, cfg config.Config, log *slog.Logger, h *secretsHealth) (*vault.Backend, error) {
	v := cfg.Vault
	return vault.New(ctx, vault.Config{
		Address: v.Addr, Mount: v.Mount, PathPrefix: v.PathPrefix, Namespace: v.Namespace,
		Auth: v.Auth, Token: v.Token,
		RoleID: v.RoleID, SecretIDFile: v.SecretIDFile, AppRoleMount: v.AppRoleMount,
		K8sRole: v.K8sRole, K8sTokenFile: v.K8sTokenFile, K8sMount: v.K8sMount,
		CACert: v.CACert, ClientCert: v.ClientCert, ClientKey: v.ClientKey, TLSServerName: v.TLSServerName,
		InsecureSkipVerify: v.SkipVerifyBool(), AllowInsecure: v.InsecureDevBool(),
		Timeout: v.Timeout, Logger: log, OnError: h.failed,
	})
}

// pingSecrets wraps the backend's Ping so that a success after failures is recorded.
func pingSecrets(ping func(context.Context) error, h *secretsHealth) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := ping(ctx); err != nil {
			if !errors.Is(err, context.Canceled) && !h.down.Load() {
				// Backends other than Vault do not report through OnError.
				h.failed("ping", err)
			}
			return err
		}
		h.ok()
		return nil
	}
}

// watchSecrets pings the backend every interval, so degradation and recovery are
// noticed (metric, audit event) even when nobody calls /readyz.
func watchSecrets(ping func(context.Context) error, every time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_ = ping(pctx)
				cancel()
			}
		}
	}
}
