// Package server assembles a Lanyard server from its parts — store, secrets backend,
// audit log, signing keys, lifecycle service, OAuth provider, HTTP API — with explicit
// constructors, and runs it until its context ends. `lanyard serve` and the end-to-end
// tests both start servers through it, so the tests exercise the real wiring.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/lanyardhq/lanyard/internal/adminauth"
	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/attest/sigstore"
	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/federation"
	"github.com/lanyardhq/lanyard/internal/httpapi"
	"github.com/lanyardhq/lanyard/internal/keys"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/oauth"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/rotation"
	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/secrets/local"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
)

// Server is a wired Lanyard server, listening but not yet serving.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	st       *gormstore.Store
	audit    *audit.Log
	auditRun context.CancelFunc
	auditErr chan error
	ln       net.Listener
	srv      *http.Server
	// tasks run beside the HTTP server until Run's context ends (Vault token renewal,
	// the rotation scheduler, the secrets backend watch).
	tasks []func(context.Context) error
	fed   *federation.Service

	generatedAdminToken string
}

// New opens the store (applying migrations), the secrets backend, the audit log and the
// signing keys, bootstraps the admin token, and listens on cfg.Addr. cfg must have been
// validated. On error everything opened so far is closed.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Server, err error) {
	s := &Server{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if s.st, err = gormstore.Open(ctx, cfg.DatabaseURL, log); err != nil {
		return nil, err
	}
	if err := s.st.Migrate(ctx); err != nil {
		return nil, err
	}
	health := newSecretsHealth(log, cfg.Secrets)
	sb, err := s.openSecrets(ctx, cfg, health)
	if err != nil {
		return nil, err
	}
	pepper, err := loadPepper(ctx, sb)
	if err != nil {
		return nil, err
	}
	hasher, err := lifecycle.NewSecretHasher(pepper)
	if err != nil {
		return nil, err
	}

	// The audit writer outlives the HTTP server: it stops only after the last request
	// has been answered, and flushes every queued event before returning.
	s.audit = audit.New(s.st, log, audit.Options{})
	health.audit.Store(s.audit)
	auditCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.auditRun, s.auditErr = stop, make(chan error, 1)
	go func() { s.auditErr <- s.audit.Run(auditCtx) }()

	km := keys.NewManager(s.st, sb, log, keys.Options{
		// Replicas learn of a rotation at their next scheduler tick: a retired key stays
		// published for the longest token lifetime plus that delay.
		MaxTokenTTL: cfg.MaxTokenTTL + cfg.Rotation.CheckInterval, OnEvent: s.keyEvent})
	if err := km.Init(ctx); err != nil {
		return nil, err
	}

	admin, generated, err := adminauth.Bootstrap(ctx, s.st, hasher, cfg.AdminToken)
	if err != nil {
		return nil, err
	}
	if generated != "" {
		s.generatedAdminToken = generated
		if err := s.audit.Record(ctx, audit.Event{Type: "admin.token_bootstrapped", Actor: "system", Outcome: "success"}); err != nil {
			return nil, err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(httpapi.NewAgentsCollector(s.st), httpapi.NewAuditCollector(s.audit))
	health.register(reg)
	ready := map[string]func(context.Context) error{"database": s.st.Ping}
	degraded := map[string]func(context.Context) error{}
	if cfg.Secrets == "vault" {
		// Tokens are signed with keys held in memory: a Vault outage degrades the
		// server (no registration, no rotation) but does not make it unready.
		degraded["secrets"] = pingSecrets(sb.Ping, health)
		s.tasks = append(s.tasks, watchSecrets(degraded["secrets"], 15*time.Second))
	} else {
		ready["secrets"] = pingSecrets(sb.Ping, health)
	}

	enrol, akEnrolments, err := tpmEnrolments(cfg, s.st, s.audit, log)
	if err != nil {
		return nil, err
	}
	svc := lifecycle.New(s.st, s.audit, hasher, lifecycle.Options{
		DefaultTokenTTL: cfg.TokenTTL, MaxTokenTTL: cfg.MaxTokenTTL, CredentialGrace: cfg.CredentialGrace,
		AKEnrolments: akEnrolments, Secrets: sb,
	})
	provider := oauth.New(oauth.Deps{Store: s.st, Keys: km, Audit: s.audit, Hasher: hasher, Admin: admin}, oauth.Options{
		Issuer: cfg.Issuer, DefaultAudience: cfg.DefaultAudience, MaxTokenTTL: cfg.MaxTokenTTL,
		Logger: log, Registerer: reg,
	})
	svc.OnChange(provider.Invalidate)
	fed, err := newFederation(ctx, cfg, s.st, s.audit, log)
	if err != nil {
		return nil, err
	}
	svc.SetIssuerTrust(fed)
	provider.SetFederation(fed)
	s.fed = fed
	// Other replicas' writes reach this one through the change feed (PostgreSQL only;
	// SQLite is a single process): see internal/oauth/changes.go.
	if feed := s.st.ChangeFeed(); feed != nil {
		router := newChangeRouter(log, provider, km, fed, feed.Live, reg)
		degraded["change_feed"] = router.check
		s.tasks = append(s.tasks, func(ctx context.Context) error { return feed.Run(ctx, router) }, router.run)
	}
	s.tasks = append(s.tasks, provider.Run)
	sigv, err := sigstoreVerifier(cfg)
	if err != nil {
		return nil, err
	}
	att := attest.New(s.st, s.audit, svc, km, attest.Options{Issuer: cfg.Issuer, TPM: attest.TPMQuotes{}, Sigstore: sigv, MaxOutstanding: int(cfg.AttestationMaxChallenges)})
	att.OnResult(provider.InvalidateAgent)

	eng := rotation.New(s.st, svc, km, sb, s.audit, rotation.Options{
		AgentEvery: cfg.Rotation.AgentCredentialEvery, AgentGrace: cfg.CredentialGrace,
		KeyEvery: cfg.Rotation.SigningKeyEvery, PublishAhead: cfg.Rotation.SigningKeyPublishAhead,
		CheckInterval: cfg.Rotation.CheckInterval, LeaseTTL: cfg.Rotation.LeaseTTL, Logger: log,
	})
	reg.MustRegister(eng.Collectors()...)
	s.tasks = append(s.tasks, eng.Run)

	ui, err := newUI(cfg, log, svc, att, s.audit, s.st, admin, eng)
	if err != nil {
		return nil, err
	}
	handler := httpapi.New(httpapi.Deps{
		Lifecycle: svc, OAuth: provider, Attest: att, Issuer: cfg.Issuer, Admin: admin, Audit: s.audit, AuditLog: s.st,
		Ready: ready, Degraded: degraded, Rotation: eng,
		Gatherer: reg, Registerer: reg, TPMEnrolments: enrol, Federation: fed, UI: ui,
	}, httpapi.Options{MaxBodyBytes: cfg.MaxBodyBytes, Logger: log})

	s.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if s.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		s.ln = tls.NewListener(s.ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// GeneratedAdminToken is the bootstrap admin token when this start generated one (the
// first start without LANYARD_ADMIN_TOKEN), else "". It must be shown exactly once.
func (s *Server) GeneratedAdminToken() string { return s.generatedAdminToken }

// Run serves until ctx ends, then shuts down gracefully: in-flight requests finish
// (within cfg.ShutdownTimeout), the audit log flushes every queued event, and the store
// closes. Run always releases the server's resources.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), s.cfg.ShutdownTimeout)
		defer cancel()
		s.log.Info("shutting down")
		return s.srv.Shutdown(sctx)
	})
	g.Go(func() error { return s.purgeRevocations(gctx) })
	for _, task := range s.tasks {
		g.Go(func() error { return task(gctx) })
	}
	g.Go(func() error { return s.fed.Run(gctx) })
	g.Go(func() error { return s.purgeUISessions(gctx) })
	return g.Wait()
}

// close stops the audit writer (after it flushed) and closes the store.
func (s *Server) close() {
	if s.auditRun != nil {
		s.auditRun()
		if err := <-s.auditErr; err != nil {
			s.log.Error("audit log writer", "err", err)
		}
		s.auditRun = nil
	}
	if s.ln != nil {
		_ = s.ln.Close()
	}
	if s.st != nil {
		_ = s.st.Close()
		s.st = nil
	}
}

func (s *Server) keyEvent(ctx context.Context, ev keys.Event) {
	data := map[string]any{"kid": ev.KID, "alg": ev.Alg}
	if !ev.NotAfter.IsZero() {
		data["not_after"] = ev.NotAfter.UTC().Format(time.RFC3339)
	}
	if err := s.audit.Record(ctx, audit.Event{Type: "signing_key." + ev.Type, Actor: "system", Outcome: "success", Data: data}); err != nil {
		s.log.Error("audit signing key event", "err", err)
	}
}

// purgeRevocations drops revocations of tokens that have expired anyway, and
// attestation challenges that expired unused.
func (s *Server) purgeRevocations(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if n, err := s.st.PurgeRevocations(ctx, now); err != nil {
				s.log.Warn("purge revocations", "err", err)
			} else if n > 0 {
				s.log.Debug("purged expired revocations", "count", n)
			}
			if n, err := s.st.PurgeChallenges(ctx, now); err != nil {
				s.log.Warn("purge attestation challenges", "err", err)
			} else if n > 0 {
				s.log.Debug("purged expired attestation challenges", "count", n)
			}
		}
	}
}

// sigstoreVerifier builds the Sigstore bundle verifier from the configured trusted root
// or public key; nil when neither is set (agents whose policy names Sigstore signers
// then fail the sigstore check with a clear detail).
func sigstoreVerifier(cfg config.Config) (attest.SigstoreVerifier, error) {
	switch {
	case cfg.SigstoreTrustedRoot != "":
		b, err := os.ReadFile(cfg.SigstoreTrustedRoot)
		if err != nil {
			return nil, err
		}
		v, err := sigstore.NewVerifier(b, sigstore.Options{})
		if err != nil {
			return nil, fmt.Errorf("sigstore trusted root %s: %w", cfg.SigstoreTrustedRoot, err)
		}
		return attest.SigstoreBundles{Verifier: v}, nil
	case cfg.SigstorePublicKey != "":
		b, err := os.ReadFile(cfg.SigstorePublicKey)
		if err != nil {
			return nil, err
		}
		v, err := sigstore.NewKeyVerifier(b, sigstore.Options{})
		if err != nil {
			return nil, fmt.Errorf("sigstore public key %s: %w", cfg.SigstorePublicKey, err)
		}
		return attest.SigstoreBundles{Verifier: v}, nil
	}
	return nil, nil
}

func (s *Server) openSecrets(ctx context.Context, cfg config.Config, h *secretsHealth) (secrets.Backend, error) {
	switch cfg.Secrets {
	case "local":
		mk, err := local.LoadMasterKey(cfg.DataDir, cfg.MasterKey)
		if err != nil {
			return nil, err
		}
		return local.New(filepath.Join(cfg.DataDir, "secrets"), mk)
	case "vault":
		vb, err := openVault(ctx, cfg, s.log, h)
		if err != nil {
			return nil, err
		}
		s.tasks = append(s.tasks, vb.Run)
		return vb, nil
	}
	return nil, fmt.Errorf("secrets backend %q is not available", cfg.Secrets)
}

// pepperPath holds the key of the HMAC that hashes client secrets and admin tokens.
const pepperPath = "lanyard/pepper"

// loadPepper returns the server pepper, creating it at first start. Version 1 is the
// pepper: if two replicas race at first start, both settle on the first write.
func loadPepper(ctx context.Context, sb secrets.Backend) ([]byte, error) {
	s, err := sb.Get(ctx, pepperPath, 1)
	if errors.Is(err, secrets.ErrNotFound) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if _, err := sb.Put(ctx, pepperPath, map[string]string{"pepper": hex.EncodeToString(b)}); err != nil {
			return nil, fmt.Errorf("store pepper: %w", err)
		}
		s, err = sb.Get(ctx, pepperPath, 1)
	}
	if err != nil {
		return nil, fmt.Errorf("load pepper: %w", err)
	}
	p, err := hex.DecodeString(s.Data["pepper"])
	if err != nil || len(p) != 32 {
		return nil, errors.New("load pepper: stored pepper is malformed")
	}
	return p, nil
}

// NewLogger builds the process logger from cfg: text or JSON, at cfg.LogLevel, with the
// request id added to every record logged with a request context.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := config.ParseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(requestid.LogHandler(h))
}
