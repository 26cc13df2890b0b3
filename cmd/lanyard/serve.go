package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/server"
)

// defaultMemoryLimit is the Go runtime's soft memory limit when GOMEMLIMIT is unset.
const defaultMemoryLimit = 384 << 20

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
			// Issuing a token allocates little that lives: a larger GC target trades a
			// few MiB of heap for ~5% more tokens/s and a shorter tail (docs/benchmarks.md).
			// GOGC in the environment still wins.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(400)
			}
			// GOGC=400 lets the heap grow to five times what is live: fine for a small
			// heap, too much once the caches of a large fleet are live (a million-agent
			// run reached 711 MiB). A soft limit makes the collector work harder only
			// near it. GOMEMLIMIT in the environment wins; set it to ~90% of the
			// container's memory when that is larger.
			if os.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(defaultMemoryLimit)
			}
			log := server.NewLogger(cfg, os.Stderr)
			slog.SetDefault(log)
			log.Info("starting lanyard", "config", cfg)
			srv, err := server.New(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if tok := srv.GeneratedAdminToken(); tok != "" {
				fmt.Fprintf(out, "\n  Bootstrap admin token (shown once; Lanyard stores only its hash):\n\n    %s\n\n"+
					"  Use it as 'Authorization: Bearer <token>', or: export LANYARD_ADMIN_TOKEN=%s\n\n", tok, tok)
			}
			fmt.Fprintf(out, "Lanyard is listening on %s\n  issuer:    %s\n  discovery: %s/.well-known/openid-configuration\n",
				srv.Addr(), cfg.Issuer, cfg.Issuer)
			return srv.Run(cmd.Context())
		},
	}
	cfg.Flags(cmd.Flags())
	return cmd
}
