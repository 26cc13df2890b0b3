package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/gowebpki/jcs"
	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/attest/measure"
	"github.com/lanyardhq/lanyard/internal/attest/tpm"
	"github.com/lanyardhq/lanyard/internal/client"
)

// openTPM opens a TPM device (/dev/tpmrm0) or a swtpm server socket.
func openTPM(path string) (transport.TPMCloser, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	if fi.Mode()&os.ModeSocket != 0 {
		return tpm.OpenSocket(path)
	}
	return linuxtpm.Open(path)
}

// attestOptions are the flags of `lanyard attest` (and `lanyard token --attest`).
type attestOptions struct {
	clientID, keyFile string
	model, prompt     string
	tools, tpmPath    string
	akKind            string
	pcrs              []int
	bundles           []string
	showPassingChecks bool
}

func (a *attestOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&a.clientID, "client-id", "", "the agent's client_id (required)")
	f.StringVar(&a.keyFile, "key", "", "private JWK file for private_key_jwt (from lanyard keygen)")
	f.StringVar(&a.model, "model", "", "model file or directory to measure")
	f.StringVar(&a.prompt, "prompt", "", "system prompt file to measure")
	f.StringVar(&a.tools, "tools", "", "tool manifest (MCP tools/list JSON) to measure")
	f.StringVar(&a.tpmPath, "tpm", "", "TPM device (/dev/tpmrm0) or swtpm socket to quote with")
	f.IntSliceVar(&a.pcrs, "pcr", []int{16}, "PCRs (sha256 bank) to quote")
	f.StringVar(&a.akKind, "ak", "ecc", "attestation key type, as enrolled: ecc or rsa")
	f.StringArrayVar(&a.bundles, "bundle", nil, "Sigstore bundle file to present (repeatable), e.g. model.sig")
}

// run measures, gets a challenge, builds the evidence and posts it.
func (a *attestOptions) run(cmd *cobra.Command, c *client.Client) (*client.AttestationResult, error) {
	if a.clientID == "" || a.keyFile == "" {
		return nil, errors.New("attest: --client-id and --key are required")
	}
	key, err := readPrivateJWK(a.keyFile, cmd.ErrOrStderr())
	if err != nil {
		return nil, err
	}
	m, err := measure.Measure(a.model, a.prompt, a.tools)
	if err != nil {
		return nil, err
	}
	auth := client.AgentAuth{ClientID: a.clientID, Key: key}
	nonce, _, err := c.Challenge(cmd.Context(), auth)
	if err != nil {
		return nil, fmt.Errorf("attest: challenge: %w", err)
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	evidence := map[string]any{"nonce": nonce, "measurements": json.RawMessage(mj)}
	if a.tpmPath != "" {
		t, err := openTPM(a.tpmPath)
		if err != nil {
			return nil, err
		}
		defer t.Close()
		ev, err := quote(t, a.akKind, nonce, mj, a.pcrs)
		if err != nil {
			return nil, err
		}
		evidence["tpm"] = ev
	}
	var bundles []json.RawMessage
	for _, path := range a.bundles {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("attest: bundle: %w", err)
		}
		if !json.Valid(b) {
			return nil, fmt.Errorf("attest: bundle %s is not JSON", path)
		}
		bundles = append(bundles, b)
	}
	if len(bundles) > 0 {
		evidence["sigstore_bundles"] = bundles
	}
	res, err := c.Attest(cmd.Context(), auth, evidence)
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	return res, nil
}

// quote makes a TPM quote whose extraData binds the nonce and the measurements.
func quote(t transport.TPM, akKind, nonce string, measurementsJSON []byte, pcrs []int) (map[string]any, error) {
	nb, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil {
		return nil, fmt.Errorf("attest: server nonce: %w", err)
	}
	canon, err := jcs.Transform(measurementsJSON)
	if err != nil {
		return nil, err
	}
	var at *tpm.Attester
	switch akKind {
	case "ecc", "":
		at, err = tpm.NewAttester(t)
	case "rsa":
		at, err = tpm.NewAttesterRSA(t)
	default:
		return nil, fmt.Errorf("attest: --ak %q is not ecc or rsa", akKind)
	}
	if err != nil {
		return nil, err
	}
	defer at.Close()
	q, err := at.Quote(attest.QualifyingData(nb, canon), pcrs)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"ak_public": base64.StdEncoding.EncodeToString(q.AKPublic),
		"quote":     base64.StdEncoding.EncodeToString(q.Quote),
		"signature": base64.StdEncoding.EncodeToString(q.Signature),
		"pcrs":      q.PCRs,
	}, nil
}

func printResult(w io.Writer, r *client.AttestationResult, all bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "attestation:\t%s\n", clean(r.ID))
	fmt.Fprintf(tw, "status:\t%s\n", clean(r.Status))
	fmt.Fprintf(tw, "host:\t%s\n", clean(r.Host))
	if r.Status == "affirming" {
		fmt.Fprintf(tw, "expires:\t%s\n", fmtTime(r.ExpiresAt))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CHECK\tOUTCOME\tEXPECTED\tACTUAL\tDETAIL")
	for _, c := range r.Checks {
		if !all && c.Outcome != "fail" && r.Status != "affirming" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clean(c.Name), clean(c.Outcome), orDash(clean(c.Expected)), orDash(clean(c.Actual)), orDash(clean(c.Detail)))
	}
	return tw.Flush()
}

func newAttestCmd() *cobra.Command {
	var (
		o apiOptions
		a attestOptions
	)
	cmd := &cobra.Command{
		Use:   "attest --client-id ID --key agent.jwk [--model PATH] [--prompt FILE] [--tools FILE] [--tpm DEV] [--bundle FILE …]",
		Short: "Prove what the agent is: measure, quote, and get an attestation result",
		Long: "Measure the agent's model, prompt and tool manifest, get a challenge, build the evidence " +
			"(a TPM quote binding the challenge and the measurements with --tpm, Sigstore bundles with --bundle) " +
			"and print the result: affirming with its expiry, or contraindicated with every failed check, " +
			"expected and actual side by side. Exits 1 when the result is contraindicated.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.newClient(false)
			if err != nil {
				return err
			}
			res, err := a.run(cmd, c)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.json {
				if err := printJSON(out, res.Raw, res); err != nil {
					return err
				}
			} else if err := printResult(out, res, a.showPassingChecks); err != nil {
				return err
			}
			if res.Status != "affirming" {
				return errors.New("attestation contraindicated")
			}
			return nil
		},
	}
	o.addFlags(cmd, false)
	a.addFlags(cmd)
	cmd.Flags().BoolVar(&a.showPassingChecks, "all", false, "show passing checks of a contraindicated result too")
	return cmd
}

func newTPMCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tpm", Short: "Work with the host's TPM"}
	cmd.AddCommand(newTPMEnrollCmd())
	return cmd
}
