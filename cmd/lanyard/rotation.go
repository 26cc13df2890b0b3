package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/client"
)

// newRotationCmd is `lanyard rotation`: status, schedules and manual signing key
// rotation. (An agent's credential is rotated by hand with `lanyard agent rotate`.)
func newRotationCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotation",
		Short: "Rotation status and schedules of agent credentials and signing keys",
	}
	show := func(use, short string, args cobra.PositionalArgs, call func(cmd *cobra.Command, c *client.Client, args []string) (json.RawMessage, error), flags func(*cobra.Command)) *cobra.Command {
		var o apiOptions
		sub := &cobra.Command{
			Use: use, Short: short, Args: args,
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.newClient(true)
				if err != nil {
					return err
				}
				raw, err := call(cmd, c, args)
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), raw, nil)
			},
		}
		o.addFlags(sub, true)
		if flags != nil {
			flags(sub)
		}
		return sub
	}
	var interval, grace, alg string
	var useDefault, immediate bool
	cmd.AddCommand(
		show("status", "Fleet rotation compliance, signing keys and rotations in progress", cobra.NoArgs,
			func(cmd *cobra.Command, c *client.Client, _ []string) (json.RawMessage, error) {
				return c.RotationStatus(cmd.Context())
			}, nil),
		show("agent AGENT_ID", "An agent's credential: policy, last rotated, next due, recent rotations", cobra.ExactArgs(1),
			func(cmd *cobra.Command, c *client.Client, args []string) (json.RawMessage, error) {
				return c.AgentRotation(cmd.Context(), args[0])
			}, nil),
		show("schedule AGENT_ID (--interval 720h [--grace 24h] | --default)", "Set an agent's rotation schedule, or return it to the server's", cobra.ExactArgs(1),
			func(cmd *cobra.Command, c *client.Client, args []string) (json.RawMessage, error) {
				if useDefault == (interval != "") {
					return nil, fmt.Errorf("give --interval or --default")
				}
				return c.SetAgentRotation(cmd.Context(), args[0], interval, grace)
			}, func(sub *cobra.Command) {
				sub.Flags().StringVar(&interval, "interval", "", "rotate every, e.g. 720h (0s: never)")
				sub.Flags().StringVar(&grace, "grace", "", "how long the old credential keeps working, e.g. 24h")
				sub.Flags().BoolVar(&useDefault, "default", false, "remove the agent's schedule: the server's applies")
			}),
		show("signing-key", "Rotate a signing key: published first, signing after the publish-ahead period", cobra.NoArgs,
			func(cmd *cobra.Command, c *client.Client, _ []string) (json.RawMessage, error) {
				return c.RotateSigningKey(cmd.Context(), alg, immediate)
			}, func(sub *cobra.Command) {
				sub.Flags().StringVar(&alg, "alg", "ES256", "ES256 or RS256")
				sub.Flags().BoolVar(&immediate, "immediate", false, "activate at once (a suspected compromise); relying parties may not have fetched the new key yet")
			}),
	)
	return cmd
}
