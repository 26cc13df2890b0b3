package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/attest/tpm/swtpmtest"
)

// tpm2Tools runs tpm2-tools against one swtpm, in dir.
type tpm2Tools struct {
	t        *testing.T
	dir, tci string
}

func (x tpm2Tools) run(args ...string) []byte {
	x.t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = x.dir
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+x.tci)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		x.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	// swtpm has no resource manager: objects a tool loaded stay loaded.
	if args[0] != "tpm2_flushcontext" {
		x.run("tpm2_flushcontext", "-t")
	}
	return out
}

func (x tpm2Tools) read(name string) []byte {
	x.t.Helper()
	b, err := os.ReadFile(filepath.Join(x.dir, name))
	if err != nil {
		x.t.Fatal(err)
	}
	return b
}

// TestTPM2ToolsInterop: an attestation key made by tpm2_createak enrols through
// tpm2_activatecredential, and a quote made by tpm2_quote is accepted through the
// normal evidence path. The verifier reads the standard structures tpm2-tools writes
// (TPM2B_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE), not only our own client's output.
func TestTPM2ToolsInterop(t *testing.T) {
	if _, err := exec.LookPath("tpm2_quote"); err != nil {
		swtpmtest.Unavailable(t, "tpm2-tools are not installed (run test/tools/install-tpm-tools.sh)")
	}
	for _, ak := range []struct{ alg, scheme string }{{"ecc", "ecdsa"}, {"rsa", "rsassa"}} {
		t.Run(ak.alg, func(t *testing.T) {
			sw := swtpmtest.Start(t, swtpmtest.Options{})
			x := tpm2Tools{t: t, dir: t.TempDir(), tci: sw.TCTI}
			e := start(t, "")

			x.run("tpm2_createek", "-G", "ecc", "-c", "ek.ctx", "-u", "ek.pub")
			x.run("tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", ak.alg, "-s", ak.scheme, "-g", "sha256", "-u", "ak.pub", "-n", "ak.name")
			akPub := x.read("ak.pub")

			// Enrolment: the server's credential goes into tpm2-tools' credential file
			// (magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET).
			r := e.api(http.MethodPost, "/v1/tpm/enrolments", map[string]any{"ek_public": b64(x.read("ek.pub")), "ak_public": b64(akPub)})
			if r.status != http.StatusCreated {
				t.Fatalf("start enrolment: %d %s", r.status, r.body)
			}
			m := r.json(t)
			if name := hex.EncodeToString(x.read("ak.name")); m["ak_name"] != name {
				t.Fatalf("server's AK name %v, tpm2_createak's %s", m["ak_name"], name)
			}
			blob, enc := mustB64(t, m["credential_blob"]), mustB64(t, m["encrypted_secret"])
			cred := binary.BigEndian.AppendUint32(nil, 0xBADCC0DE)
			cred = binary.BigEndian.AppendUint32(cred, 1)
			cred = binary.BigEndian.AppendUint16(cred, uint16(len(blob)))
			cred = append(cred, blob...)
			cred = binary.BigEndian.AppendUint16(cred, uint16(len(enc)))
			cred = append(cred, enc...)
			if err := os.WriteFile(filepath.Join(x.dir, "cred.in"), cred, 0o600); err != nil {
				t.Fatal(err)
			}
			x.run("tpm2_startauthsession", "--policy-session", "-S", "session.ctx")
			x.run("tpm2_policysecret", "-S", "session.ctx", "-c", "e")
			x.run("tpm2_activatecredential", "-c", "ak.ctx", "-C", "ek.ctx", "-i", "cred.in", "-o", "secret.out", "-P", "session:session.ctx")
			x.run("tpm2_flushcontext", "session.ctx")
			r = e.api(http.MethodPost, "/v1/tpm/enrolments/"+m["id"].(string)+"/activation", map[string]any{"secret": b64(x.read("secret.out"))})
			if r.status != http.StatusOK {
				t.Fatalf("activation: %d %s", r.status, r.body)
			}

			// Reference: PCR 16 extended once from zero.
			ext := sha256.Sum256([]byte("lanyard interop"))
			x.run("tpm2_pcrextend", "16:sha256="+hex.EncodeToString(ext[:]))
			pcr16 := sha256.Sum256(append(make([]byte, 32), ext[:]...))
			a := e.registerJWT(t, "tpm2-tools-"+ak.alg, map[string]any{"reference": map[string]any{"model_digest": modelDigest,
				"tpm": map[string]any{"ak_public": b64(akPub), "pcrs": map[string]any{"sha256": map[string]string{
					"0": strings.Repeat("00", 32), "16": hex.EncodeToString(pcr16[:])}}}}})

			meas := map[string]string{"model_digest": modelDigest}
			nonce := e.challenge(t, a)
			nb, _ := base64.RawURLEncoding.DecodeString(nonce)
			raw, _ := json.Marshal(meas)
			canon, _ := jcs.Transform(raw)
			x.run("tpm2_quote", "-c", "ak.ctx", "-l", "sha256:0,16", "-q", hex.EncodeToString(attest.QualifyingData(nb, canon)),
				"-m", "quote.msg", "-s", "quote.sig", "-o", "quote.pcrs", "-F", "values", "-g", "sha256")
			pcrs := x.read("quote.pcrs")
			if len(pcrs) != 64 {
				t.Fatalf("tpm2_quote -F values wrote %d bytes, want two sha256 PCRs", len(pcrs))
			}
			body := e.attestBody(t, a, nonce, meas)
			body["tpm"] = map[string]any{"ak_public": b64(akPub), "quote": b64(x.read("quote.msg")), "signature": b64(x.read("quote.sig")),
				"pcrs": map[string]any{"sha256": map[string]string{"0": hex.EncodeToString(pcrs[:32]), "16": hex.EncodeToString(pcrs[32:])}}}
			if v := e.attest(t, body); v.Status != "affirming" {
				t.Fatalf("tpm2_quote evidence: %+v", v)
			}
		})
	}
}
