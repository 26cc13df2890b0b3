package sigstore

import (
	"strconv"
	"strings"
	"testing"
)

func strconvQuote(b []byte) string { return strconv.Quote(string(b)) }

// FuzzVerify feeds untrusted bundle bytes to both verifiers: they must never panic
// (Verify's recover would turn a panic into an error, so that error fails the fuzz),
// and whatever verifies must report well-formed digests.
func FuzzVerify(f *testing.F) {
	keyless, key := goldenVerifiers(f)
	for _, s := range []string{"", "{}", "null", `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range []struct {
			v   *Verifier
			ids []Identity
		}{{keyless, alice}, {key, nil}} {
			res, err := c.v.Verify(b, c.ids)
			if err != nil {
				if strings.Contains(err.Error(), "panicked") {
					t.Fatal(err)
				}
				if !strings.HasPrefix(err.Error(), "sigstore: ") {
					t.Fatalf("error without package prefix: %v", err)
				}
				continue
			}
			for d := range res.Subjects {
				if !isSHA256Hex(d) {
					t.Fatalf("subject digest %q", d)
				}
			}
		}
	})
}
