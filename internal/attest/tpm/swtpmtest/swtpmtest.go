// Package swtpmtest starts a fresh software TPM (swtpm) for a test, so TPM code is
// tested against a real TPM 2.0 implementation spoken to over its socket protocol, the
// way `lanyard attest --tpm <socket>` and tpm2-tools reach it.
//
// Each [Start] runs its own `swtpm socket --tpm2` with a new state directory and stops
// it when the test ends. With [Options.EKCertificate], the state is first manufactured
// by swtpm_setup with EK certificates issued by a local CA private to the test (the CA
// certificates are in [TPM.CACerts]), like a TPM vendor's provisioning.
//
// When swtpm (or swtpm_setup) is not installed the test is skipped, or fails when
// LANYARD_REQUIRE_SERVICES=1 (test/tools/install-tpm-tools.sh installs them).
package swtpmtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/lanyardhq/lanyard/internal/attest/tpm"
)

// RequireServicesEnv, set to 1, turns a missing swtpm into a failure.
const RequireServicesEnv = "LANYARD_REQUIRE_SERVICES"

// Options choose how the TPM is manufactured.
type Options struct {
	// EKCertificate runs swtpm_setup to create the RSA 2048 and ECC P-384 EKs with
	// certificates in NV (indices 0x01c00002 and 0x01c00016) from a test-local CA.
	EKCertificate bool
}

// TPM is a running swtpm.
type TPM struct {
	// Socket is the TPM command socket (what --tpm takes). The control socket is
	// Socket + ".ctrl", where tpm2-tss's swtpm TCTI looks for it.
	Socket string
	// CACerts is a PEM bundle of the local CA's root and issuing certificates, when
	// Options.EKCertificate was set.
	CACerts string
	// TCTI is the TPM2TOOLS_TCTI value that reaches this TPM.
	TCTI string
}

// Available reports whether swtpm is installed, and why not.
func Available(needSetup bool) error {
	tools := []string{"swtpm"}
	if needSetup {
		tools = append(tools, "swtpm_setup", "swtpm_localca")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (run test/tools/install-tpm-tools.sh)", tool)
		}
	}
	return nil
}

// Unavailable skips the test, or fails it under LANYARD_REQUIRE_SERVICES=1.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv(RequireServicesEnv) == "1" {
		tb.Fatalf("swtpmtest: "+format+" (required: %s=1)", append(args, RequireServicesEnv)...)
	}
	tb.Skipf("swtpmtest: "+format, args...)
}

// Start runs a fresh swtpm for tb and stops it at cleanup.
func Start(tb testing.TB, opts Options) *TPM {
	tb.Helper()
	if err := Available(opts.EKCertificate); err != nil {
		Unavailable(tb, "%v", err)
	}
	// Unix socket paths are limited to 108 bytes: keep them out of t.TempDir, whose
	// path grows with the test's name.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		tb.Fatal(err)
	}
	t := &TPM{Socket: filepath.Join(dir, "tpm.sock")}
	t.TCTI = "swtpm:path=" + t.Socket
	if opts.EKCertificate {
		t.CACerts = manufacture(tb, dir, state)
	}

	var log bytes.Buffer
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+state,
		"--server", "type=unixio,path="+t.Socket,
		"--ctrl", "type=unixio,path="+t.Socket+".ctrl",
		"--flags", "not-need-init,startup-clear")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("swtpmtest: start swtpm: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Stat(t.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			// A real connection: the socket file exists before swtpm listens on it.
			if c, err := net.Dial("unix", t.Socket); err == nil {
				c.Close()
				break
			}
		}
		select {
		case err := <-exited:
			tb.Fatalf("swtpmtest: swtpm exited (%v): %s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("swtpmtest: swtpm did not listen on %s within 10s: %s", t.Socket, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return t
}

// Open connects to the TPM; close it before another connection is made (swtpm serves
// one connection at a time).
func (t *TPM) Open(tb testing.TB) transport.TPMCloser {
	tb.Helper()
	c, err := tpm.OpenSocket(t.Socket)
	if err != nil {
		tb.Fatalf("swtpmtest: open %s: %v", t.Socket, err)
	}
	return c
}

// manufacture runs swtpm_setup with a local CA in dir, and returns the CA bundle path.
func manufacture(tb testing.TB, dir, state string) string {
	tb.Helper()
	ca := filepath.Join(dir, "ca")
	if err := os.Mkdir(ca, 0o700); err != nil {
		tb.Fatal(err)
	}
	localca := filepath.Join(dir, "swtpm-localca.conf")
	write(tb, localca, fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", ca))
	options := filepath.Join(dir, "swtpm-localca.options")
	write(tb, options, "--platform-manufacturer Lanyard\n--platform-version 2.1\n--platform-model test\n")
	setup := filepath.Join(dir, "swtpm_setup.conf")
	write(tb, setup, fmt.Sprintf("create_certs_tool = swtpm_localca\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = %s\nactive_pcr_banks = sha256\n", localca, options))
	out, err := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", state, "--create-ek-cert",
		"--config", setup, "--overwrite").CombinedOutput()
	if err != nil {
		tb.Fatalf("swtpmtest: swtpm_setup: %v: %s", err, out)
	}
	var bundle []byte
	for _, f := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		b, err := os.ReadFile(filepath.Join(ca, f))
		if err != nil {
			tb.Fatalf("swtpmtest: local CA: %v", err)
		}
		bundle = append(bundle, b...)
	}
	path := filepath.Join(dir, "ek-ca.pem")
	write(tb, path, string(bundle))
	return path
}

func write(tb testing.TB, path, s string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		tb.Fatal(err)
	}
}
