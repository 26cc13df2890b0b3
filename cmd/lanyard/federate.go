package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/client"
)

// newAgentFederateCmd is `lanyard agent federate`: both directions of an agent's
// federation with Entra ID and other OIDC issuers, and the issuers trusted for it.
func newAgentFederateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "federate",
		Short: "Show and change an agent's federation with Entra ID and other OIDC issuers",
		Long: "Inbound: an agent authenticates with a token from a trusted external issuer (an Entra ID " +
			"managed identity, GitHub Actions, a Kubernetes service account, SPIRE) that matches one of its " +
			"federated credentials. Outbound: Entra ID trusts the agent's Lanyard tokens for " +
			client.EntraAudience + " (see the README, \"Federating with Entra ID\").\n\n" +
			"Every change is audited.",
	}
	cmd.AddCommand(newFederateShowCmd(), newFederateAddCmd(), newFederateRemoveCmd(), newFederateEntraCmd(),
		newFederateIssuersCmd(), newFederateTrustCmd(), newFederateUntrustCmd())
	return cmd
}

func printFederation(w io.Writer, f *client.Federation) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Agent", orDash(f.AgentID))
	if len(f.Credentials) == 0 {
		row("Inbound credentials", "-")
	}
	for i, c := range f.Credentials {
		line := fmt.Sprintf("%s issuer %s subject %s audience %s", clean(c.ID), clean(c.Issuer), clean(c.Subject), clean(c.Audience))
		if len(c.AllowedClientIDs) > 0 {
			line += " client ids " + joinClean(c.AllowedClientIDs)
		}
		if c.RequireAppToken {
			line += " app-only"
		}
		if i == 0 {
			row("Inbound credentials", line)
		} else {
			fmt.Fprintf(tw, "\t%s\n", line)
		}
	}
	row("Entra federation", yesNo(f.EntraFederation))
	row("Entra FIC issuer", orDash(f.Issuer))
	row("Entra FIC subject", orDash(f.Subject))
	row("Entra FIC audience", orDash(f.Audience))
	return tw.Flush()
}

func newFederateShowCmd() *cobra.Command {
	var o apiOptions
	cmd := &cobra.Command{
		Use:   "show AGENT_ID",
		Short: "Show the agent's federated credentials and what Entra ID must trust",
		Args:  cobra.ExactArgs(1),
		RunE: o.runFederation(func(ctx context.Context, c *client.Client, args []string) (*client.Federation, error) {
			f, err := c.GetFederation(ctx, args[0])
			if err != nil {
				return nil, fmt.Errorf("federation of agent %s: %w", args[0], err)
			}
			return f, nil
		}),
	}
	o.addFlags(cmd, true)
	return cmd
}

func newFederateAddCmd() *cobra.Command {
	var (
		o   apiOptions
		req client.FederatedCredentialRequest
	)
	cmd := &cobra.Command{
		Use:   "add AGENT_ID --issuer URL --subject SUB --audience AUD [--client-id ID]... [--app-only]",
		Short: "Let a token from a trusted external issuer authenticate the agent",
		Long: "Add a federated credential: a token whose iss, sub and aud equal --issuer, --subject and " +
			"--audience authenticates the agent at the token endpoint (as its client_assertion, with the " +
			"agent's client_id). For an Entra ID managed identity the subject is its object (principal) id; " +
			"--client-id restricts azp/appid and --app-only requires idtyp=app. The issuer must be trusted " +
			"first (lanyard agent federate trust).",
		Args: cobra.ExactArgs(1),
		RunE: o.runFederation(func(ctx context.Context, c *client.Client, args []string) (*client.Federation, error) {
			f, err := c.AddFederatedCredential(ctx, args[0], req)
			if err != nil {
				return nil, fmt.Errorf("add federated credential to agent %s: %w", args[0], err)
			}
			return f, nil
		}),
	}
	o.addFlags(cmd, true)
	fl := cmd.Flags()
	fl.StringVar(&req.Issuer, "issuer", "", "exact iss of the external tokens (required)")
	fl.StringVar(&req.Subject, "subject", "", "exact sub (for Entra ID: the managed identity's object id) (required)")
	fl.StringVar(&req.Audience, "audience", "", "aud the tokens must contain, e.g. api://lanyard (required)")
	fl.StringArrayVar(&req.AllowedClientIDs, "client-id", nil, "allowed azp/appid (repeatable; default: any)")
	fl.BoolVar(&req.RequireAppToken, "app-only", false, "require an Entra ID app-only token (idtyp=app)")
	for _, n := range []string{"issuer", "subject", "audience"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newFederateRemoveCmd() *cobra.Command {
	var o apiOptions
	cmd := &cobra.Command{
		Use:   "remove AGENT_ID CREDENTIAL_ID",
		Short: "Remove one federated credential",
		Args:  cobra.ExactArgs(2),
		RunE: o.runFederation(func(ctx context.Context, c *client.Client, args []string) (*client.Federation, error) {
			f, err := c.RemoveFederatedCredential(ctx, args[0], args[1])
			if err != nil {
				return nil, fmt.Errorf("remove federated credential %s of agent %s: %w", args[1], args[0], err)
			}
			return f, nil
		}),
	}
	o.addFlags(cmd, true)
	return cmd
}

func newFederateEntraCmd() *cobra.Command {
	var (
		o       apiOptions
		enable  bool
		disable bool
	)
	cmd := &cobra.Command{
		Use:   "entra AGENT_ID (--enable | --disable)",
		Short: "Let Entra ID trust the agent's tokens (RS256 tokens for " + client.EntraAudience + ")",
		Args:  cobra.ExactArgs(1),
		RunE: o.runFederation(func(ctx context.Context, c *client.Client, args []string) (*client.Federation, error) {
			if _, err := c.SetEntraFederation(ctx, args[0], enable); err != nil {
				return nil, fmt.Errorf("set entra_federation of agent %s: %w", args[0], err)
			}
			f, err := c.GetFederation(ctx, args[0])
			if err != nil {
				return nil, fmt.Errorf("federation of agent %s: %w", args[0], err)
			}
			return f, nil
		}),
	}
	o.addFlags(cmd, true)
	cmd.Flags().BoolVar(&enable, "enable", false, "allow tokens for "+client.EntraAudience)
	cmd.Flags().BoolVar(&disable, "disable", false, "stop issuing them")
	cmd.MarkFlagsMutuallyExclusive("enable", "disable")
	cmd.MarkFlagsOneRequired("enable", "disable")
	return cmd
}

func newFederateIssuersCmd() *cobra.Command {
	var o apiOptions
	cmd := &cobra.Command{
		Use:   "issuers",
		Short: "List the trusted external issuers and the state of their keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			list, err := c.FederationIssuers(cmd.Context())
			if err != nil {
				return fmt.Errorf("list federation issuers: %w", err)
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), nil, list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ISSUER\tKIND\tALGS\tSOURCE\tKEYS\tFETCHED\tLAST ERROR")
			for _, i := range list {
				fetched := "-"
				if !i.KeysFetchedAt.IsZero() {
					fetched = fmtTime(i.KeysFetchedAt)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", clean(i.Issuer), clean(i.Kind), joinClean(i.Algs),
					clean(i.Source), i.Keys, fetched, orDash(clean(i.LastError)))
			}
			return tw.Flush()
		},
	}
	o.addFlags(cmd, true)
	return cmd
}

func newFederateTrustCmd() *cobra.Command {
	var (
		o   apiOptions
		req client.FederationIssuerRequest
	)
	cmd := &cobra.Command{
		Use:   "trust ISSUER_URL [--kind entra|oidc] [--alg RS256]... [--jwks-url URL]",
		Short: "Trust an external issuer for federated credentials",
		Long: "Trust an external issuer. Entra ID issuers are https://login.microsoftonline.com/<tenant>/v2.0 " +
			"(v2 tokens) and https://sts.windows.net/<tenant>/ (v1 tokens); their kind defaults to entra " +
			"(tid, oid, uti and ver are checked) and their algorithm to RS256. Keys come from the issuer's " +
			"discovery document unless --jwks-url is given.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Issuer = args[0]
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			is, err := c.AddFederationIssuer(cmd.Context(), req)
			if err != nil {
				return fmt.Errorf("trust issuer %s: %w", args[0], err)
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), nil, is)
			}
			state := fmt.Sprintf("%d keys", is.Keys)
			if is.LastError != "" {
				state = "keys not fetched yet: " + clean(is.LastError)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trusted %s (%s, %s; %s)\n", clean(is.Issuer), clean(is.Kind), strings.Join(is.Algs, ","), state)
			return nil
		},
	}
	o.addFlags(cmd, true)
	cmd.Flags().StringVar(&req.Kind, "kind", "", "entra or oidc (default: entra for Entra ID hosts)")
	cmd.Flags().StringArrayVar(&req.Algs, "alg", nil, "accepted algorithm: RS256, PS256 or ES256 (repeatable; default RS256)")
	cmd.Flags().StringVar(&req.JWKSURL, "jwks-url", "", "JWKS URL instead of the discovery document's jwks_uri")
	return cmd
}

func newFederateUntrustCmd() *cobra.Command {
	var o apiOptions
	cmd := &cobra.Command{
		Use:   "untrust ISSUER_URL",
		Short: "Stop trusting an external issuer (its federated credentials then authenticate nobody)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			if err := c.RemoveFederationIssuer(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("untrust issuer %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "no longer trusted: %s\n", clean(args[0]))
			return nil
		},
	}
	o.addFlags(cmd, true)
	return cmd
}

// runFederation is the RunE of the commands that change or show one agent's federation:
// do runs with an admin client, and the agent's federation as the server answered is
// printed (as JSON with --json).
func (o *apiOptions) runFederation(do func(ctx context.Context, c *client.Client, args []string) (*client.Federation, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := o.newClient(true)
		if err != nil {
			return err
		}
		f, err := do(cmd.Context(), c, args)
		if err != nil {
			return err
		}
		if o.json {
			return printJSON(cmd.OutOrStdout(), f.Raw, f)
		}
		return printFederation(cmd.OutOrStdout(), f)
	}
}
