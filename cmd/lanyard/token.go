package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/client"
)

// envClientSecret holds a client secret for `lanyard token`. There is deliberately no
// --client-secret flag: a command line is readable by every user through ps and
// /proc/<pid>/cmdline and is saved in shell history, so a secret given that way leaks.
// A file (--client-secret-file, mode 0600) or the environment does not.
const envClientSecret = "LANYARD_CLIENT_SECRET"

// maxSecretFileBytes bounds a client secret file; real secrets are tens of bytes.
const maxSecretFileBytes = 4096

// readPrivateJWK reads the agent's private key written by `lanyard keygen`.
func readPrivateJWK(path string, stderr io.Writer) (*jose.JSONWebKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(stderr, "warning: %s is readable by other users (mode %04o); chmod 600 it\n", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	var k jose.JSONWebKey
	if err := json.Unmarshal(data, &k); err != nil {
		var set jose.JSONWebKeySet
		if json.Unmarshal(data, &set) == nil && len(set.Keys) > 0 {
			return nil, fmt.Errorf("%s is a JWK set; --key wants the private JWK (the .jwk file from lanyard keygen)", path)
		}
		return nil, fmt.Errorf("%s: not a JWK: %w", path, err)
	}
	if k.IsPublic() {
		return nil, fmt.Errorf("%s holds a public key; --key wants the private JWK (the .jwk file from lanyard keygen)", path)
	}
	if !k.Valid() {
		return nil, fmt.Errorf("%s: the key is not valid", path)
	}
	return &k, nil
}

// readClientSecret reads a secret from path ("-" is stdin), trimming one trailing
// newline so `echo secret > file` works.
func readClientSecret(path string, stdin io.Reader) (string, error) {
	var r io.Reader
	if path == "-" {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("read client secret: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSecretFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("read client secret from %s: %w", path, err)
	}
	if len(data) > maxSecretFileBytes {
		return "", fmt.Errorf("client secret file %s is larger than %d bytes; is it the right file?", path, maxSecretFileBytes)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return "", fmt.Errorf("client secret file %s is empty", path)
	}
	return s, nil
}

func newTokenCmd() *cobra.Command {
	var (
		o                   apiOptions
		tr                  client.TokenRequest
		keyFile, secretFile string
		withAttest          bool
		att                 attestOptions
	)
	cmd := &cobra.Command{
		Use:   "token --client-id ID (--key agent.jwk | --client-secret-file FILE) [flags]",
		Short: "Get an access token for an agent (client_credentials)",
		Long: "Get an access token for an agent with the client_credentials grant and print the token response.\n\n" +
			"With --key the agent authenticates with private_key_jwt (RFC 7523), signing a short-lived " +
			"client assertion with its private JWK. Otherwise it uses its client secret, read from " +
			"--client-secret-file (\"-\" for stdin) or " + envClientSecret + "; there is no flag for the " +
			"secret itself because command lines leak through ps and shell history.\n\n" +
			"The token endpoint and issuer are discovered from the server URL (--url or " + envURL + ").",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stderr := cmd.ErrOrStderr()
			switch {
			case keyFile != "":
				k, err := readPrivateJWK(keyFile, stderr)
				if err != nil {
					return err
				}
				tr.Key = k
			case secretFile != "":
				s, err := readClientSecret(secretFile, cmd.InOrStdin())
				if err != nil {
					return err
				}
				tr.ClientSecret = s
			case os.Getenv(envClientSecret) != "":
				tr.ClientSecret = os.Getenv(envClientSecret)
			default:
				return errors.New("no client credential: give --key (private_key_jwt), --client-secret-file, or set " + envClientSecret)
			}
			c, err := o.newClient(false)
			if err != nil {
				return err
			}
			if withAttest {
				// Attest first: the server refuses tokens to an agent with reference
				// measurements until it has a current affirming result.
				att.clientID, att.keyFile = tr.ClientID, keyFile
				r, err := att.run(cmd, c)
				if err != nil {
					return err
				}
				if r.Status != "affirming" {
					_ = printResult(stderr, r, false)
					return errors.New("attestation contraindicated; no token requested")
				}
				fmt.Fprintf(stderr, "attestation %s affirming until %s\n", clean(r.ID), fmtTime(r.ExpiresAt))
			}
			res, err := c.RequestToken(cmd.Context(), tr)
			if err != nil {
				return fmt.Errorf("get token: %w", err)
			}
			out := cmd.OutOrStdout()
			if o.json {
				return printJSON(out, res.Raw, res)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "access_token:\t%s\n", res.AccessToken)
			fmt.Fprintf(tw, "token_type:\t%s\n", clean(res.TokenType))
			if res.ExpiresIn > 0 {
				fmt.Fprintf(tw, "expires_in:\t%d\n", res.ExpiresIn)
			}
			if res.Scope != "" {
				fmt.Fprintf(tw, "scope:\t%s\n", clean(res.Scope))
			}
			return tw.Flush()
		},
	}
	o.addFlags(cmd, false)
	f := cmd.Flags()
	f.StringVar(&tr.ClientID, "client-id", "", "the agent's client_id (required)")
	f.StringVar(&keyFile, "key", "", "private JWK file for private_key_jwt (from lanyard keygen)")
	f.StringVar(&secretFile, "client-secret-file", "", "file holding the client secret (\"-\" reads stdin); or set "+envClientSecret)
	f.StringArrayVar(&tr.Scopes, "scope", nil, "scope to request (repeatable)")
	f.StringArrayVar(&tr.Resources, "resource", nil, "resource (audience) to request, RFC 8707 (repeatable)")
	f.StringVar(&tr.TokenURL, "token-url", "", "token endpoint (default: discovered from the server URL)")
	f.StringVar(&tr.Audience, "audience", "", "client assertion audience (default: the discovered issuer, or --token-url)")
	f.BoolVar(&withAttest, "attest", false, "attest first (with --model, --prompt, --tools, --tpm, --bundle) and fail if not affirming")
	f.StringVar(&att.model, "model", "", "with --attest: model file or directory to measure")
	f.StringVar(&att.prompt, "prompt", "", "with --attest: system prompt file to measure")
	f.StringVar(&att.tools, "tools", "", "with --attest: tool manifest to measure")
	f.StringVar(&att.tpmPath, "tpm", "", "with --attest: TPM device or swtpm socket to quote with")
	f.IntSliceVar(&att.pcrs, "pcr", []int{16}, "with --attest: PCRs to quote")
	f.StringArrayVar(&att.bundles, "bundle", nil, "with --attest: Sigstore bundle file (repeatable)")
	_ = cmd.MarkFlagRequired("client-id")
	cmd.MarkFlagsMutuallyExclusive("key", "client-secret-file")
	return cmd
}
