package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"
)

// keygenRSABits is the RSA modulus size keygen uses for RS256 and PS256 keys.
const keygenRSABits = 3072

// generatedKey is a fresh agent key pair in JWK form.
type generatedKey struct {
	private jose.JSONWebKey
	public  jose.JSONWebKeySet
}

// generateAgentKey makes a signing key for alg (ES256, RS256 or PS256). The kid is the
// RFC 7638 thumbprint (SHA-256, base64url) of the public key, so it is stable and
// derivable by anyone who has the key.
func generateAgentKey(alg string) (*generatedKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, keygenRSABits)
	default:
		return nil, fmt.Errorf("--alg %q: use ES256, RS256 or PS256", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: alg, Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("key thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	g := &generatedKey{
		private: jose.JSONWebKey{Key: priv, KeyID: pub.KeyID, Algorithm: alg, Use: "sig"},
		public:  jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}},
	}
	return g, nil
}

// writeNewFile writes data to path with mode perm. Unless force is set it refuses to
// replace an existing file (O_EXCL, so a file appearing concurrently is not clobbered
// either); with force it replaces the file atomically via a temporary file in the same
// directory, so a crash never leaves a half-written key.
func writeNewFile(path string, data []byte, perm os.FileMode, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s already exists; pass --force to overwrite it", path)
			}
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			os.Remove(path)
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(path)
			return fmt.Errorf("write %s: %w", path, err)
		}
		return f.Close()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func newKeygenCmd() *cobra.Command {
	var (
		alg, out     string
		force, jsonO bool
	)
	cmd := &cobra.Command{
		Use:   "keygen [--alg ES256|RS256|PS256] [--out agent]",
		Short: "Generate an agent key pair for private_key_jwt",
		Long: "Generate an agent signing key pair for private_key_jwt client authentication.\n\n" +
			"Writes <out>.jwk (the private JWK, mode 0600: keep it with the agent, never share it) and " +
			"<out>.jwks.json (the public JWK set, to register with `lanyard agent register --jwks`). " +
			"The kid is the key's RFC 7638 thumbprint. Existing files are never overwritten without --force.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out must not be empty")
			}
			privPath, pubPath := out+".jwk", out+".jwks.json"
			if !force {
				// Check both before writing either, so a refusal leaves nothing behind.
				for _, p := range []string{privPath, pubPath} {
					if _, err := os.Lstat(p); err == nil {
						return fmt.Errorf("%s already exists; pass --force to overwrite it (the old key is then lost)", p)
					}
				}
			}
			g, err := generateAgentKey(alg)
			if err != nil {
				return err
			}
			privJSON, err := json.MarshalIndent(g.private, "", "  ")
			if err != nil {
				return fmt.Errorf("encode private key: %w", err)
			}
			pubJSON, err := json.MarshalIndent(g.public, "", "  ")
			if err != nil {
				return fmt.Errorf("encode public key set: %w", err)
			}
			if err := writeNewFile(privPath, append(privJSON, '\n'), 0o600, force); err != nil {
				return err
			}
			if err := writeNewFile(pubPath, append(pubJSON, '\n'), 0o644, force); err != nil {
				if !force {
					os.Remove(privPath) // do not leave a private key without its public half
				}
				return err
			}
			w := cmd.OutOrStdout()
			if jsonO {
				return printJSON(w, nil, map[string]string{
					"private_key_file": privPath, "jwks_file": pubPath, "kid": g.private.KeyID, "alg": alg,
				})
			}
			fmt.Fprintf(w, "private key: %s (mode 0600; keep it secret, give it only to the agent)\n", privPath)
			fmt.Fprintf(w, "public JWKS: %s (register it: lanyard agent register --jwks %s ...)\n", pubPath, pubPath)
			fmt.Fprintf(w, "kid:         %s\n", g.private.KeyID)
			fmt.Fprintf(w, "alg:         %s\n", alg)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&alg, "alg", "ES256", "signature algorithm: ES256 (P-256), RS256 or PS256 (RSA 3072)")
	f.StringVar(&out, "out", "agent", "output path prefix: writes <out>.jwk and <out>.jwks.json")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	f.BoolVar(&jsonO, "json", false, "print the file names, kid and alg as JSON")
	return cmd
}
