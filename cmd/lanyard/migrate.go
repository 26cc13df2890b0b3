package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/server"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
)

func newMigrateCmd() *cobra.Command {
	cfg := config.Defaults()
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply database migrations and exit (serve also applies them at start-up)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Load(cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			if !cfg.IsPostgres() {
				if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
					return err
				}
			}
			log := server.NewLogger(cfg, os.Stderr)
			st, err := gormstore.Open(cmd.Context(), cfg.DatabaseURL, log)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Migrate(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "database migrated (%s)\n", st.Dialect())
			return nil
		},
	}
	cfg.Flags(cmd.Flags())
	return cmd
}
