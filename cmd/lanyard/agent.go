package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/client"
)

// Environment variables the client commands read.
const (
	envURL        = "LANYARD_URL"
	envAdminToken = "LANYARD_ADMIN_TOKEN"
	defaultURL    = "http://localhost:8080"
)

// apiOptions are the connection and output flags shared by every command that talks to
// a Lanyard server. Flags win over the environment.
type apiOptions struct {
	url        string
	adminToken string
	json       bool
}

// addFlags registers --url, --json and, for admin commands, --admin-token on cmd.
func (o *apiOptions) addFlags(cmd *cobra.Command, admin bool) {
	cmd.Flags().StringVar(&o.url, "url", "", "Lanyard server URL (env "+envURL+", default "+defaultURL+")")
	if admin {
		// The flag exists for scripts that already hold the token in a variable; the
		// environment is the better place because flags show up in ps and shell history.
		cmd.Flags().StringVar(&o.adminToken, "admin-token", "",
			"admin bearer token (prefer env "+envAdminToken+": flags are visible in ps and shell history)")
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the server's JSON instead of human-readable output")
}

func (o *apiOptions) serverURL() string {
	if o.url != "" {
		return o.url
	}
	if v := os.Getenv(envURL); v != "" {
		return v
	}
	return defaultURL
}

// newClient builds a client for the configured server. With admin set it requires an
// admin token.
func (o *apiOptions) newClient(admin bool) (*client.Client, error) {
	u := o.serverURL()
	if _, err := client.ParseBaseURL(u); err != nil {
		return nil, fmt.Errorf("bad server URL (from --url or %s): %w", envURL, err)
	}
	tok := o.adminToken
	if tok == "" {
		tok = os.Getenv(envAdminToken)
	}
	if admin && tok == "" {
		return nil, fmt.Errorf("no admin token: set %s (or pass --admin-token); "+
			"a server started without one printed a generated token once at first start", envAdminToken)
	}
	if !admin {
		tok = ""
	}
	return client.New(u, tok, nil), nil
}

// printJSON writes raw (the server's bytes) indented, or v marshalled when raw is empty.
func printJSON(w io.Writer, raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		raw = b
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// clean makes a server-supplied string safe to print to a terminal: a string with
// control characters (which could move the cursor or recolour the screen) is quoted.
func clean(s string) string {
	if strings.ContainsFunc(s, unicode.IsControl) {
		return strconv.Quote(s)
	}
	return s
}

func joinClean(list []string) string {
	if len(list) == 0 {
		return "-"
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = clean(s)
	}
	return strings.Join(out, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// printAgent writes one agent as aligned "key: value" lines, followed by the extra
// key/value rows (a one-time secret, say).
func printAgent(w io.Writer, a *client.Agent, extra ...[2]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("ID", orDash(a.ID))
	row("Client ID", orDash(a.ClientID))
	row("Name", orDash(a.Name))
	row("Namespace", orDash(a.Namespace))
	row("Owner", orDash(a.Owner))
	row("Purpose", orDash(a.Purpose))
	row("Risk level", orDash(a.RiskLevel))
	status := orDash(a.Status)
	if a.StatusReason != "" {
		status += " (reason: " + clean(a.StatusReason) + ")"
	}
	row("Status", status)
	row("Token alg", orDash(a.TokenAlg))
	row("Credential type", orDash(a.CredentialType))
	if len(a.Credentials) == 0 {
		row("Credentials", "-")
	}
	for i, c := range a.Credentials {
		line := fmt.Sprintf("%s %s %s created %s", clean(c.ID), clean(c.Type), clean(c.State), fmtTime(c.CreatedAt))
		if c.ExpiresAt != nil {
			line += " until " + fmtTime(*c.ExpiresAt)
		}
		if len(c.KIDs) > 0 {
			line += " kids " + joinClean(c.KIDs)
		}
		if c.Issuer != "" {
			line += " issuer " + clean(c.Issuer) + " subject " + clean(c.Subject)
		}
		if i == 0 {
			row("Credentials", line)
		} else {
			fmt.Fprintf(tw, "\t%s\n", line)
		}
	}
	row("Allowed scopes", joinClean(a.AllowedScopes))
	row("Allowed resources", joinClean(a.AllowedResources))
	row("Max token TTL", a.MaxTokenTTL.String())
	row("Attestation TTL", a.AttestationTTL.String())
	row("Can introspect", yesNo(a.CanIntrospect))
	row("Entra federation", yesNo(a.EntraFederation))
	ref := "-"
	if r := bytes.TrimSpace(a.Reference); len(r) > 0 && !bytes.Equal(r, []byte("null")) && !bytes.Equal(r, []byte("{}")) {
		var buf bytes.Buffer
		if json.Compact(&buf, r) == nil {
			ref = clean(buf.String())
		}
	}
	row("Reference", ref)
	row("Created", fmtTime(a.CreatedAt))
	row("Updated", fmtTime(a.UpdatedAt))
	for _, kv := range extra {
		row(kv[0], kv[1])
	}
	return tw.Flush()
}

// printAgentTable writes agents as an aligned table.
func printAgentTable(w io.Writer, agents []client.Agent) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAMESPACE\tNAME\tOWNER\tSTATUS\tRISK\tCREDENTIAL\tCREATED")
	for _, a := range agents {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(a.ID), orDash(a.Namespace), orDash(a.Name),
			orDash(a.Owner), orDash(a.Status), orDash(a.RiskLevel), orDash(a.CredentialType), fmtTime(a.CreatedAt))
	}
	return tw.Flush()
}

// readJWKS reads a public JWK set for registration or rotation. It accepts a set
// ({"keys":[...]}) or a single JWK, and refuses private keys: only the public half is
// ever sent to the server.
func readJWKS(path string) (*jose.JSONWebKeySet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	var probe struct {
		Keys json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s: not JSON: %w", path, err)
	}
	set := &jose.JSONWebKeySet{}
	if probe.Keys != nil {
		if err := json.Unmarshal(data, set); err != nil {
			return nil, fmt.Errorf("%s: not a valid JWK set: %w", path, err)
		}
	} else {
		var k jose.JSONWebKey
		if err := json.Unmarshal(data, &k); err != nil {
			return nil, fmt.Errorf("%s: neither a JWK set nor a JWK: %w", path, err)
		}
		set.Keys = []jose.JSONWebKey{k}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%s: the JWK set has no keys", path)
	}
	for i, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("%s: key %d (kid %q) is a private key; register the public set "+
				"(the .jwks.json file lanyard keygen wrote), never the private key", path, i, k.KeyID)
		}
		if !k.Valid() {
			return nil, fmt.Errorf("%s: key %d (kid %q) is not a valid public key", path, i, k.KeyID)
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, fmt.Errorf("%s: key %d (kid %q) has use %q; client assertion keys need use \"sig\"", path, i, k.KeyID, k.Use)
		}
	}
	return set, nil
}

// readReference reads a reference-measurements JSON document and checks it is an object.
func readReference(path string) (json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read reference: %w", err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("%s: reference measurements must be a JSON object: %w", path, err)
	}
	return json.RawMessage(data), nil
}

func durationPtr(d time.Duration) *client.Duration {
	v := client.Duration(d)
	return &v
}

// warnSecretOnce prints the one-time secret warning to stderr.
func warnSecretOnce(w io.Writer) {
	fmt.Fprintln(w, "warning: the client secret is shown only this once; the server keeps only a hash. Store it now.")
}

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Register and manage agents through the /v1 admin API",
		Long: "Register and manage agents through the /v1 admin API.\n\n" +
			"The server is " + envURL + " (default " + defaultURL + ") and the admin token " + envAdminToken +
			"; --url and --admin-token override them.",
	}
	cmd.AddCommand(
		newAgentRegisterCmd(),
		newAgentListCmd(),
		newAgentGetCmd(),
		newAgentUpdateCmd(),
		newAgentRotateCmd(),
		newAgentFederateCmd(),
	)
	for _, t := range []struct{ action, short string }{
		{client.ActionActivate, "Activate a pending agent"},
		{client.ActionSuspend, "Suspend an active agent: its outstanding tokens stop working at once"},
		{client.ActionResume, "Resume a suspended agent"},
		{client.ActionRevoke, "Revoke an agent (active or suspended)"},
		{client.ActionDecommission, "Decommission an agent for good: credentials destroyed, record kept for audit"},
	} {
		cmd.AddCommand(newAgentTransitionCmd(t.action, t.short))
	}
	return cmd
}

func newAgentRegisterCmd() *cobra.Command {
	var (
		o                           apiOptions
		req                         client.RegisterAgentRequest
		jwksFile, referenceFile     string
		secret, generateKey         bool
		maxTokenTTL, attestationTTL time.Duration
		scopes, resources           []string
		fed                         client.FederatedCredentialRequest
	)
	cmd := &cobra.Command{
		Use:   "register --name NAME --namespace NS (--jwks FILE | --secret | --generate-key | --federated-issuer URL ...) [flags]",
		Short: "Register an agent",
		Long: "Register an agent with a private_key_jwt credential (--jwks, the public set from " +
			"`lanyard keygen`; preferred) or a client secret (--secret; the server generates it and " +
			"this command prints it once).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if secret {
				req.Credential = client.CredentialSpec{Type: client.CredentialClientSecret}
			} else if generateKey {
				req.Credential = client.CredentialSpec{Type: client.CredentialPrivateKeyJWT, Generate: true}
			} else if fed.Issuer != "" {
				req.Credential = client.CredentialSpec{Type: client.CredentialFederated, FederatedCredentialRequest: fed}
			} else {
				set, err := readJWKS(jwksFile)
				if err != nil {
					return err
				}
				req.Credential = client.CredentialSpec{Type: client.CredentialPrivateKeyJWT, JWKS: set}
			}
			if referenceFile != "" {
				ref, err := readReference(referenceFile)
				if err != nil {
					return err
				}
				req.Reference = ref
			}
			req.AllowedScopes, req.AllowedResources = scopes, resources
			if maxTokenTTL != 0 {
				req.MaxTokenTTL = durationPtr(maxTokenTTL)
			}
			if attestationTTL != 0 {
				req.AttestationTTL = durationPtr(attestationTTL)
			}
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			res, err := c.RegisterAgent(cmd.Context(), req)
			if err != nil {
				return fmt.Errorf("register agent: %w", err)
			}
			out := cmd.OutOrStdout()
			if res.ClientSecret != "" || res.PrivateKey != "" {
				warnSecretOnce(cmd.ErrOrStderr())
			}
			if o.json {
				return printJSON(out, res.Raw, res)
			}
			var extra [][2]string
			if res.ClientSecret != "" {
				extra = append(extra, [2]string{"Client secret", res.ClientSecret})
			}
			if res.PrivateKey != "" {
				extra = append(extra, [2]string{"Private key", "\n" + res.PrivateKey})
			}
			return printAgent(out, &res.Agent, extra...)
		},
	}
	o.addFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "agent name, unique in its namespace (required)")
	f.StringVar(&req.Namespace, "namespace", "", "namespace, the isolation unit (required)")
	f.StringVar(&req.Owner, "owner", "", "owning team")
	f.StringVar(&req.Purpose, "purpose", "", "what the agent is for")
	f.StringVar(&req.RiskLevel, "risk", "", "risk level: low, medium, high or critical (default: the server's)")
	f.StringVar(&jwksFile, "jwks", "", "public JWK set file for a private_key_jwt credential")
	f.BoolVar(&secret, "secret", false, "use a client_secret credential generated by the server")
	f.BoolVar(&generateKey, "generate-key", false, "use a private_key_jwt key pair generated by the server and kept in its secrets backend (Vault)")
	f.StringArrayVar(&scopes, "scope", nil, "allowed scope (repeatable)")
	f.StringArrayVar(&resources, "resource", nil, "allowed resource URI, RFC 8707 (repeatable)")
	f.DurationVar(&maxTokenTTL, "max-token-ttl", 0, "longest access token lifetime, e.g. 5m (default: the server's)")
	f.DurationVar(&attestationTTL, "attestation-ttl", 0, "how long an attestation result stays valid, e.g. 10m (default: the server's)")
	f.StringVar(&req.TokenAlg, "token-alg", "", "access token signing algorithm: ES256 or RS256 (default: the server's)")
	f.BoolVar(&req.Pending, "pending", false, "register as pending, for review before use (activate it later)")
	f.BoolVar(&req.CanIntrospect, "can-introspect", false, "let the agent call the introspection endpoint as a resource server")
	f.StringVar(&referenceFile, "reference", "", "JSON file with the reference measurements")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("namespace")
	f.StringVar(&fed.Issuer, "federated-issuer", "", "register with a federated credential: exact iss of the external tokens (a trusted issuer)")
	f.StringVar(&fed.Subject, "federated-subject", "", "federated credential: exact sub (Entra ID: the managed identity's object id)")
	f.StringVar(&fed.Audience, "federated-audience", "", "federated credential: aud the tokens must contain, e.g. api://lanyard")
	f.BoolVar(&req.EntraFederation, "entra-federation", false, "let Entra ID trust the agent's tokens (RS256 tokens for api://AzureADTokenExchange)")
	cmd.MarkFlagsMutuallyExclusive("jwks", "secret", "generate-key", "federated-issuer")
	cmd.MarkFlagsOneRequired("jwks", "secret", "generate-key", "federated-issuer")
	cmd.MarkFlagsRequiredTogether("federated-issuer", "federated-subject", "federated-audience")
	return cmd
}

func newAgentListCmd() *cobra.Command {
	var (
		o    apiOptions
		opts client.ListAgentsOptions
		all  bool
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List agents, one page at a time (or --all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if all {
				var agents []client.Agent
				for a, err := range c.AllAgents(cmd.Context(), opts) {
					if err != nil {
						return fmt.Errorf("list agents: %w", err)
					}
					agents = append(agents, a)
				}
				if o.json {
					items := make([]json.RawMessage, len(agents))
					for i, a := range agents {
						items[i] = a.Raw
					}
					return printJSON(out, nil, map[string]any{"items": items})
				}
				return printAgentTable(out, agents)
			}
			page, err := c.ListAgents(cmd.Context(), opts)
			if err != nil {
				return fmt.Errorf("list agents: %w", err)
			}
			if o.json {
				return printJSON(out, page.Raw, page)
			}
			if err := printAgentTable(out, page.Items); err != nil {
				return err
			}
			if page.NextCursor != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more agents: rerun with --cursor %s, or use --all\n", clean(page.NextCursor))
			}
			return nil
		},
	}
	o.addFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&opts.Namespace, "namespace", "", "only agents in this namespace")
	f.StringVar(&opts.Owner, "owner", "", "only agents of this owner")
	f.StringVar(&opts.Status, "status", "", "only agents in this status (pending, active, suspended, revoked, decommissioned)")
	f.IntVar(&opts.Limit, "limit", 0, "page size (default: the server's)")
	f.StringVar(&opts.Cursor, "cursor", "", "continue after a previous page")
	f.BoolVar(&all, "all", false, "follow cursors and list every matching agent")
	return cmd
}

func newAgentGetCmd() *cobra.Command {
	var o apiOptions
	cmd := &cobra.Command{
		Use:   "get AGENT_ID",
		Short: "Show one agent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			a, err := c.GetAgent(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("get agent %s: %w", args[0], err)
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), a.Raw, a)
			}
			return printAgent(cmd.OutOrStdout(), a)
		},
	}
	o.addFlags(cmd, true)
	return cmd
}

func newAgentUpdateCmd() *cobra.Command {
	var (
		o                           apiOptions
		owner, purpose, risk, alg   string
		scopes, resources           []string
		maxTokenTTL, attestationTTL time.Duration
		canIntrospect               bool
		referenceFile               string
	)
	cmd := &cobra.Command{
		Use:   "update AGENT_ID [flags]",
		Short: "Change an agent's settings (only the flags given are changed)",
		Long: "Change an agent's settings with a JSON merge patch: only the flags given are sent.\n" +
			"--scope and --resource replace the whole list; pass --scope '' to clear it.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			var req client.UpdateAgentRequest
			changed := 0
			str := func(name string, v string, dst **string) {
				if f.Changed(name) {
					*dst = &v
					changed++
				}
			}
			str("owner", owner, &req.Owner)
			str("purpose", purpose, &req.Purpose)
			str("risk", risk, &req.RiskLevel)
			str("token-alg", alg, &req.TokenAlg)
			list := func(name string, v []string, dst **[]string) {
				if f.Changed(name) {
					nonEmpty := []string{}
					for _, s := range v {
						if s != "" {
							nonEmpty = append(nonEmpty, s)
						}
					}
					*dst = &nonEmpty
					changed++
				}
			}
			list("scope", scopes, &req.AllowedScopes)
			list("resource", resources, &req.AllowedResources)
			if f.Changed("max-token-ttl") {
				req.MaxTokenTTL = durationPtr(maxTokenTTL)
				changed++
			}
			if f.Changed("attestation-ttl") {
				req.AttestationTTL = durationPtr(attestationTTL)
				changed++
			}
			if f.Changed("can-introspect") {
				req.CanIntrospect = &canIntrospect
				changed++
			}
			if referenceFile != "" {
				ref, err := readReference(referenceFile)
				if err != nil {
					return err
				}
				req.Reference = ref
				changed++
			}
			if changed == 0 {
				return errors.New("nothing to update: give at least one of --owner, --purpose, --risk, --scope, " +
					"--resource, --max-token-ttl, --attestation-ttl, --token-alg, --can-introspect, --reference")
			}
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			a, err := c.UpdateAgent(cmd.Context(), args[0], req)
			if err != nil {
				return fmt.Errorf("update agent %s: %w", args[0], err)
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), a.Raw, a)
			}
			return printAgent(cmd.OutOrStdout(), a)
		},
	}
	o.addFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&owner, "owner", "", "owning team")
	f.StringVar(&purpose, "purpose", "", "what the agent is for")
	f.StringVar(&risk, "risk", "", "risk level: low, medium, high or critical")
	f.StringArrayVar(&scopes, "scope", nil, "allowed scope (repeatable; replaces the list)")
	f.StringArrayVar(&resources, "resource", nil, "allowed resource URI (repeatable; replaces the list)")
	f.DurationVar(&maxTokenTTL, "max-token-ttl", 0, "longest access token lifetime, e.g. 5m")
	f.DurationVar(&attestationTTL, "attestation-ttl", 0, "attestation result lifetime, e.g. 10m")
	f.StringVar(&alg, "token-alg", "", "access token signing algorithm: ES256 or RS256")
	f.BoolVar(&canIntrospect, "can-introspect", false, "allow the agent to introspect tokens")
	f.StringVar(&referenceFile, "reference", "", "JSON file with the new reference measurements")
	return cmd
}

func newAgentTransitionCmd(action, short string) *cobra.Command {
	var (
		o      apiOptions
		reason string
	)
	cmd := &cobra.Command{
		Use:   action + " AGENT_ID [--reason TEXT]",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			a, err := c.Transition(cmd.Context(), args[0], action, reason)
			if err != nil {
				return fmt.Errorf("%s agent %s: %w", action, args[0], err)
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), a.Raw, a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "agent %s is now %s\n", clean(a.ID), clean(a.Status))
			return nil
		},
	}
	o.addFlags(cmd, true)
	cmd.Flags().StringVar(&reason, "reason", "", "why; recorded on the agent and in the audit log")
	return cmd
}

func newAgentRotateCmd() *cobra.Command {
	var (
		o        apiOptions
		jwksFile string
		grace    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rotate AGENT_ID [--jwks FILE] [--grace 24h]",
		Short: "Rotate an agent's credential; the old one stays valid for the grace period",
		Long: "Rotate an agent's credential. A private_key_jwt agent needs --jwks with the new public " +
			"set; a client_secret agent gets a new secret, printed once. The old credential keeps " +
			"working until the grace period ends.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req client.RotateCredentialRequest
			if jwksFile != "" {
				set, err := readJWKS(jwksFile)
				if err != nil {
					return err
				}
				req.JWKS = set
			}
			if cmd.Flags().Changed("grace") {
				if grace < 0 {
					return fmt.Errorf("--grace %s: must not be negative", grace)
				}
				req.Grace = durationPtr(grace)
			}
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			res, err := c.RotateCredential(cmd.Context(), args[0], req)
			if err != nil {
				return fmt.Errorf("rotate credential of agent %s: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			if res.ClientSecret != "" {
				warnSecretOnce(cmd.ErrOrStderr())
			}
			if o.json {
				return printJSON(out, res.Raw, res)
			}
			extra := [][2]string{{"Old credential until", fmtTime(res.GraceUntil)}}
			if res.ClientSecret != "" {
				extra = append(extra, [2]string{"New client secret", res.ClientSecret})
			}
			if res.PrivateKey != "" {
				extra = append(extra, [2]string{"New private key", "\n" + res.PrivateKey})
			}
			return printAgent(out, &res.Agent, extra...)
		},
	}
	o.addFlags(cmd, true)
	cmd.Flags().StringVar(&jwksFile, "jwks", "", "new public JWK set (private_key_jwt agents)")
	cmd.Flags().DurationVar(&grace, "grace", 0, "how long the old credential stays valid, e.g. 24h (default: the server's)")
	return cmd
}
