package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/attest/tpm"
	"github.com/lanyardhq/lanyard/internal/client"
)

func newTPMEnrollCmd() *cobra.Command {
	var (
		o      apiOptions
		path   string
		pcrs   []int
		akKind string
		ekKind string
		into   string
	)
	cmd := &cobra.Command{
		Use:   "enroll --tpm DEV [--pcr 16 …] [--ak ecc|rsa] [--ek auto|ecc|rsa]",
		Short: "Enrol the host's TPM attestation key with the server and print it as an agent reference",
		Long: "Create (or re-create: it is derived from the endorsement seed) the TPM attestation key (AK), " +
			"prove to the server by credential activation that it lives in the same TPM as the endorsement " +
			"key (EK, sent with its certificate from the TPM's NV storage when there is one), and print the " +
			"AK's TPM2B_PUBLIC (base64) and the current sha256 PCR values as the reference.tpm member of an " +
			"agent registration. Admin-authenticated, like lanyard agent.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("--tpm is required")
			}
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			t, err := openTPM(path)
			if err != nil {
				return err
			}
			defer t.Close()
			var at *tpm.Attester
			switch akKind {
			case "ecc":
				at, err = tpm.NewAttester(t)
			case "rsa":
				at, err = tpm.NewAttesterRSA(t)
			default:
				return fmt.Errorf("--ak %q is not ecc or rsa", akKind)
			}
			if err != nil {
				return err
			}
			defer at.Close()

			if ekKind == "auto" {
				// The EK the manufacturer certified: ECC P-256 if it has a certificate,
				// else RSA 2048 if that has one, else ECC without certificate.
				ekKind = tpm.EKECC
				if ok, err := at.HasNV(tpm.EKCertIndexECC); err != nil {
					return err
				} else if !ok {
					if ok, err := at.HasNV(tpm.EKCertIndexRSA); err != nil {
						return err
					} else if ok {
						ekKind = tpm.EKRSA
					}
				}
			}
			if err := at.UseEK(ekKind); err != nil {
				return err
			}
			ekPub, err := at.EKPublic()
			if err != nil {
				return err
			}
			ekCert, err := at.EKCertificate()
			if err != nil {
				return err
			}
			ch, err := c.StartTPMEnrolment(cmd.Context(), client.TPMEnrolmentRequest{EKPublic: ekPub, EKCertificate: ekCert, AKPublic: at.AKPublic()})
			if err != nil {
				return fmt.Errorf("tpm enroll: %w", err)
			}
			secret, err := at.ActivateCredential(ch.CredentialBlob, ch.EncryptedSecret)
			if err != nil {
				return fmt.Errorf("tpm enroll: %w", err)
			}
			enrolled, err := c.ActivateTPMEnrolment(cmd.Context(), ch.ID, secret)
			if err != nil {
				return fmt.Errorf("tpm enroll: %w", err)
			}

			q, err := at.Quote(make([]byte, 32), pcrs)
			if err != nil {
				return err
			}
			ref := map[string]any{"tpm": map[string]any{
				"ak_public": base64.StdEncoding.EncodeToString(at.AKPublic()),
				"pcrs":      map[string]any{"sha256": q.PCRs["sha256"]},
			}}
			b, _ := json.MarshalIndent(ref, "", "  ")
			out := cmd.OutOrStdout()
			if into != "" {
				if err := mergeReference(into, ref["tpm"]); err != nil {
					return err
				}
			}
			if o.json {
				_, err = fmt.Fprintln(out, string(b))
				return err
			}
			fmt.Fprintf(out, "Enrolled attestation key %s (%s EK, certificate %s, EK key SHA-256 %s).\n",
				clean(enrolled.AKName), ekKind, clean(enrolled.EKCertStatus), clean(enrolled.EKPublicHash))
			fmt.Fprintln(out, "Add this to the agent's reference (lanyard agent register --reference FILE):")
			_, err = fmt.Fprintln(out, strings.TrimSpace(string(b)))
			return err
		},
	}
	o.addFlags(cmd, true)
	cmd.Flags().StringVar(&path, "tpm", "", "TPM device (/dev/tpmrm0) or swtpm socket")
	cmd.Flags().IntSliceVar(&pcrs, "pcr", []int{16}, "PCRs (sha256 bank) to pin")
	cmd.Flags().StringVar(&akKind, "ak", "ecc", "attestation key type: ecc (ECDSA P-256) or rsa (RSASSA 2048)")
	cmd.Flags().StringVar(&into, "reference", "", "also write the tpm member into this reference JSON file (e.g. from lanyard measure --json), creating it if missing")
	cmd.Flags().StringVar(&ekKind, "ek", "auto", "endorsement key: ecc (P-256), rsa (2048) or auto (the one with a certificate in NV)")
	return cmd
}

// mergeReference sets the "tpm" member of the JSON object in path (created if missing),
// keeping its other members.
func mergeReference(path string, tpmRef any) error {
	doc := map[string]json.RawMessage{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("--reference %s: not a JSON object: %w", path, err)
		}
	}
	t, err := json.Marshal(tpmRef)
	if err != nil {
		return err
	}
	doc["tpm"] = t
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}
