package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
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
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/lanyardhq/lanyard/internal/adminauth"
	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/httpapi"
	"github.com/lanyardhq/lanyard/internal/keys"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/oauth"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/secrets/local"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
)

func newServeCmd() *cobra.Command {
	cfg := config.Defaults()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Lanyard server",
		Long: `Run the Lanyard server. Every flag has an environment variable (LANYARD_ + the flag
name in upper snake case) and a YAML key (the flag name with _ for -) for --config.
Precedence: flag, then environment, then file, then default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Load(cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	cfg.Flags(cmd.Flags())
	return cmd
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := config.ParseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(requestid.LogHandler(h))
}

// serve wires the server from its parts and runs it until ctx ends.
func serve(ctx context.Context, cfg config.Config, out io.Writer) error {
	log := newLogger(cfg, os.Stderr)
	slog.SetDefault(log)
	log.Info("starting lanyard", "config", cfg)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, err := gormstore.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}

	sb, err := openSecrets(cfg)
	if err != nil {
		return err
	}
	pepper, err := loadPepper(ctx, sb)
	if err != nil {
		return err
	}
	hasher, err := lifecycle.NewSecretHasher(pepper)
	if err != nil {
		return err
	}

	// The audit writer outlives the HTTP server: it stops only after the last request
	// has been answered, and flushes every queued event before returning.
	auditCtx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAudit()
	auditLog := audit.New(st, log, audit.Options{})
	auditDone := make(chan error, 1)
	go func() { auditDone <- auditLog.Run(auditCtx) }()
	defer func() {
		stopAudit()
		if err := <-auditDone; err != nil {
			log.Error("audit log writer", "err", err)
		}
	}()

	km := keys.NewManager(st, sb, log, keys.Options{
		MaxTokenTTL: cfg.MaxTokenTTL,
		OnEvent: func(ctx context.Context, ev keys.Event) {
			data := map[string]any{"kid": ev.KID, "alg": ev.Alg}
			if !ev.NotAfter.IsZero() {
				data["not_after"] = ev.NotAfter.UTC().Format(time.RFC3339)
			}
			if err := auditLog.Record(ctx, audit.Event{Type: "signing_key." + ev.Type, Actor: "system", Outcome: "success", Data: data}); err != nil {
				log.Error("audit signing key event", "err", err)
			}
		},
	})
	if err := km.Init(ctx); err != nil {
		return err
	}

	admin, generated, err := adminauth.Bootstrap(ctx, st, hasher, cfg.AdminToken)
	if err != nil {
		return err
	}
	if generated != "" {
		fmt.Fprintf(out, "\n  Bootstrap admin token (shown once; Lanyard stores only its hash):\n\n    %s\n\n  Use it as 'Authorization: Bearer <token>' or export LANYARD_ADMIN_TOKEN.\n\n", generated)
		if err := auditLog.Record(ctx, audit.Event{Type: "admin.token_bootstrapped", Actor: "system", Outcome: "success"}); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(httpapi.NewAgentsCollector(st), httpapi.NewAuditCollector(auditLog))

	svc := lifecycle.New(st, auditLog, hasher, lifecycle.Options{
		DefaultTokenTTL: cfg.TokenTTL, MaxTokenTTL: cfg.MaxTokenTTL, CredentialGrace: cfg.CredentialGrace,
	})
	provider := oauth.New(oauth.Deps{Store: st, Keys: km, Audit: auditLog, Hasher: hasher, Admin: admin}, oauth.Options{
		Issuer: cfg.Issuer, DefaultAudience: cfg.DefaultAudience, MaxTokenTTL: cfg.MaxTokenTTL,
		Logger: log, Registerer: reg,
	})
	svc.OnChange(provider.Invalidate)

	handler := httpapi.New(httpapi.Deps{
		Lifecycle: svc, OAuth: provider, Admin: admin, Audit: auditLog, AuditLog: st,
		Ready:    map[string]func(context.Context) error{"database": st.Ping, "secrets": sb.Ping},
		Gatherer: reg, Registerer: reg,
	}, httpapi.Options{MaxBodyBytes: cfg.MaxBodyBytes, Logger: log})

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	fmt.Fprintf(out, "Lanyard is listening on %s\n  issuer:    %s\n  discovery: %s/.well-known/openid-configuration\n", ln.Addr(), cfg.Issuer, cfg.Issuer)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), cfg.ShutdownTimeout)
		defer cancel()
		log.Info("shutting down")
		return srv.Shutdown(sctx)
	})
	g.Go(func() error { return purgeRevocations(gctx, st, log) })
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func openSecrets(cfg config.Config) (secrets.Backend, error) {
	switch cfg.Secrets {
	case "local":
		mk, err := local.LoadMasterKey(cfg.DataDir, cfg.MasterKey)
		if err != nil {
			return nil, err
		}
		return local.New(filepath.Join(cfg.DataDir, "secrets"), mk)
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
		if _, err := sb.Put(ctx, pepperPath, map[string]string{"pepper": fmt.Sprintf("%x", b)}); err != nil {
			return nil, fmt.Errorf("store pepper: %w", err)
		}
		s, err = sb.Get(ctx, pepperPath, 1)
	}
	if err != nil {
		return nil, fmt.Errorf("load pepper: %w", err)
	}
	p := s.Data["pepper"]
	if len(p) < 64 {
		return nil, errors.New("load pepper: stored pepper is malformed")
	}
	return []byte(p), nil
}

// purgeRevocations drops revocations of tokens that have expired anyway.
func purgeRevocations(ctx context.Context, st *gormstore.Store, log *slog.Logger) error {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if n, err := st.PurgeRevocations(ctx, now); err != nil {
				log.Warn("purge revocations", "err", err)
			} else if n > 0 {
				log.Debug("purged expired revocations", "count", n)
			}
		}
	}
}
