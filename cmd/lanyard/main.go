// Command lanyard is the Lanyard server and its command-line client.
//
// main stays thin: it builds the command tree, and each command parses its flags and
// wires the parts it needs with explicit constructors.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lanyard:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "lanyard",
		Short:         "Identity provider and attestation service for AI agents",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(),
		newMigrateCmd(),
		newKeygenCmd(),
		newAgentCmd(),
		newTokenCmd(),
		newAuditCmd(),
		newMeasureCmd(),
		newAttestCmd(),
		newTPMCmd(),
		newRotationCmd(),
	)
	return root
}
