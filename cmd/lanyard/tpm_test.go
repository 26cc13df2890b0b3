package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/attest/tpm/swtpmtest"
	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/server"
)

// startServer runs the real server on a loopback port, configured by mod.
func startServer(t *testing.T, mod func(*config.Config)) (url, admin string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := config.Defaults()
	cfg.Addr, cfg.Issuer, cfg.DataDir = addr, "http://"+addr, t.TempDir()
	cfg.AdminToken = "cli-test-admin-token-0123456789abcdef"
	cfg.ShutdownTimeout = 5 * time.Second
	mod(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return cfg.Issuer, cfg.AdminToken
}

func runTPM(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "lanyard", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newTPMCmd(), newAgentCmd())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestTPMEnroll enrols a swtpm manufactured with EK certificates against a server that
// requires them: the CLI picks the certified (RSA) EK, the server verifies the chain, and
// the reference file gains the tpm member, which then registers.
func TestTPMEnroll(t *testing.T) {
	sw := swtpmtest.Start(t, swtpmtest.Options{EKCertificate: true})
	url, admin := startServer(t, func(c *config.Config) { c.TPMEKCABundle = sw.CACerts })
	t.Setenv(envURL, url)
	t.Setenv(envAdminToken, admin)
	ref := filepath.Join(t.TempDir(), "reference.json")
	if err := os.WriteFile(ref, []byte(`{"model_digest":"sha256:`+strings.Repeat("ab", 32)+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := runTPM(t, "tpm", "enroll", "--tpm", sw.Socket, "--pcr", "16", "--pcr", "23", "--reference", ref)
	if err != nil {
		t.Fatalf("tpm enroll: %v: %s", err, out)
	}
	if !strings.Contains(out, "rsa EK, certificate verified") {
		t.Fatalf("output: %s", out)
	}
	var doc struct {
		ModelDigest string `json:"model_digest"`
		TPM         struct {
			AKPublic string                       `json:"ak_public"`
			PCRs     map[string]map[string]string `json:"pcrs"`
		} `json:"tpm"`
	}
	b, _ := os.ReadFile(ref)
	if err := json.Unmarshal(b, &doc); err != nil || doc.ModelDigest == "" || doc.TPM.AKPublic == "" || len(doc.TPM.PCRs["sha256"]) != 2 {
		t.Fatalf("reference file: %v: %s", err, b)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(jwks, []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","use":"sig","alg":"ES256","kid":"k1"}]}`), 0o644)
	if out, err := runTPM(t, "agent", "register", "--name", "tpm-cli", "--namespace", "ns", "--owner", "o",
		"--jwks", jwks, "--reference", ref); err != nil {
		t.Fatalf("register with the enrolled AK: %v: %s", err, out)
	}

	// A TPM certified by another CA is refused, and the CLI says why.
	foreign := swtpmtest.Start(t, swtpmtest.Options{EKCertificate: true})
	out, err = runTPM(t, "tpm", "enroll", "--tpm", foreign.Socket)
	if err == nil || !strings.Contains(err.Error(), "does not chain to the configured manufacturer CAs") {
		t.Fatalf("foreign TPM: %v: %s", err, out)
	}

	// An RSA AK enrols too.
	if out, err := runTPM(t, "tpm", "enroll", "--tpm", sw.Socket, "--ak", "rsa", "--json"); err != nil || !strings.Contains(out, `"ak_public"`) {
		t.Fatalf("tpm enroll --ak rsa: %v: %s", err, out)
	}
}
