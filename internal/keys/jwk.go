package keys

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/store"
)

// Secret data keys. Only secretKeyPEM is secret; kid and alg help an operator who
// looks at the backend.
const (
	secretKeyPEM = "private_key_pem"
	secretKeyKID = "kid"
	secretKeyAlg = "alg"
)

// rsaBits is the size of generated RSA keys; minRSABits the smallest accepted from
// the store.
const (
	rsaBits    = 2048
	minRSABits = 2048
	maxRSABits = 4096
)

// generateKey makes a new private key for alg: P-256 for ES256, RSA-2048 for RS256.
func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RS256:
		return rsa.GenerateKey(rand.Reader, rsaBits)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
}

// secretPath is where the private key with this thumbprint lives.
func secretPath(thumbprint []byte) string {
	return SecretPathPrefix + hex.EncodeToString(thumbprint)
}

// publicJWK returns the kid (RFC 7638 SHA-256 thumbprint, base64url), the raw
// thumbprint, and the JWK JSON (with kid, alg, use "sig") of pub.
func publicJWK(pub crypto.PublicKey, alg string) (kid string, thumb, jwkJSON []byte, err error) {
	jwk := jose.JSONWebKey{Key: pub, Algorithm: alg, Use: "sig"}
	thumb, err = jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", nil, nil, fmt.Errorf("keys: thumbprint: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	jwkJSON, err = json.Marshal(jwk)
	if err != nil {
		return "", nil, nil, fmt.Errorf("keys: marshal public JWK: %w", err)
	}
	return jwk.KeyID, thumb, jwkJSON, nil
}

// marshalPrivate returns priv as PKCS#8 PEM.
func marshalPrivate(priv crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("keys: marshal private key: %w", err)
	}
	defer clear(der)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// parseRecord validates a store record's public half: known alg and state, a public
// JWK of the right type and size whose thumbprint is the kid, and whose own kid and
// alg (if present) agree with the record. A record that fails is never published:
// the database is not trusted to decide which keys Lanyard vouches for.
func parseRecord(r *store.SigningKey) (*publicKey, error) {
	i := algIndex(r.Alg)
	if i < 0 {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedAlg, r.Alg)
	}
	switch r.State {
	case store.KeyNext, store.KeyActive, store.KeyRetired:
	default:
		return nil, fmt.Errorf("keys: unknown state %q", r.State)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(r.PublicJWK); err != nil {
		return nil, fmt.Errorf("keys: public JWK: %w", err)
	}
	if !jwk.IsPublic() || !jwk.Valid() {
		return nil, errors.New("keys: public JWK is not a valid public key")
	}
	if jwk.KeyID != "" && jwk.KeyID != r.KID {
		return nil, fmt.Errorf("keys: public JWK kid %q differs from the record's", jwk.KeyID)
	}
	if jwk.Algorithm != "" && jwk.Algorithm != r.Alg {
		return nil, fmt.Errorf("keys: public JWK alg %q differs from the record's %q", jwk.Algorithm, r.Alg)
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return nil, fmt.Errorf("keys: public JWK use %q is not sig", jwk.Use)
	}
	pk := &publicKey{kid: r.KID, alg: r.Alg, state: r.State, createdAt: r.CreatedAt}
	switch key := jwk.Key.(type) {
	case *ecdsa.PublicKey:
		if r.Alg != ES256 || key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("keys: %s record holds an EC key on %s", r.Alg, key.Curve.Params().Name)
		}
		pk.ec = key
	case *rsa.PublicKey:
		if r.Alg != RS256 {
			return nil, fmt.Errorf("keys: %s record holds an RSA key", r.Alg)
		}
		if bits := key.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("keys: RSA key of %d bits, want %d to %d", bits, minRSABits, maxRSABits)
		}
		pk.rsa = key
	default:
		return nil, fmt.Errorf("keys: %s record holds a %T", r.Alg, jwk.Key)
	}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("keys: thumbprint: %w", err)
	}
	if base64.RawURLEncoding.EncodeToString(thumb) != r.KID {
		return nil, errors.New("keys: kid is not the public key's RFC 7638 thumbprint")
	}
	if r.State == store.KeyRetired && r.NotAfter != nil {
		pk.notAfter = *r.NotAfter
	}
	return pk, nil
}

// parsePrivate parses PKCS#8 PEM and checks it is the private half of pub.
func parsePrivate(pemText string, pub *publicKey) (*signingKey, error) {
	block, rest := pem.Decode([]byte(pemText))
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("secret does not hold exactly one PKCS#8 PEM block")
	}
	defer clear(block.Bytes)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		// The parser's message does not include key bytes.
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	sk := &signingKey{pub: pub}
	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		if pub.ec == nil || !pub.ec.Equal(&key.PublicKey) {
			return nil, errors.New("private key does not match the recorded public key")
		}
		sk.ec, sk.sigLen = key, es256SigLen
	case *rsa.PrivateKey:
		if pub.rsa == nil || !pub.rsa.Equal(&key.PublicKey) {
			return nil, errors.New("private key does not match the recorded public key")
		}
		if err := key.Validate(); err != nil {
			return nil, fmt.Errorf("invalid RSA key: %w", err)
		}
		sk.rsa, sk.sigLen = key, key.Size()
	default:
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	sk.headers.Store(&map[string]string{})
	return sk, nil
}

// stateRank orders the JWKS: active, next, retired.
func stateRank(state string) int {
	switch state {
	case store.KeyActive:
		return 0
	case store.KeyNext:
		return 1
	}
	return 2
}

// buildJWKS marshals the published keys (active, then next, then retired; newest
// first within each) and returns the earliest NotAfter among them (zero if none),
// after which the set must be rebuilt.
func buildJWKS(published map[string]*publicKey, now time.Time) ([]byte, time.Time, error) {
	ks := make([]*publicKey, 0, len(published))
	var until time.Time
	for _, k := range published {
		if k.expired(now) {
			continue
		}
		ks = append(ks, k)
		if !k.notAfter.IsZero() && (until.IsZero() || k.notAfter.Before(until)) {
			until = k.notAfter
		}
	}
	slices.SortFunc(ks, func(a, b *publicKey) int {
		return cmp.Or(cmp.Compare(stateRank(a.state), stateRank(b.state)),
			b.createdAt.Compare(a.createdAt), cmp.Compare(a.kid, b.kid))
	})
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(ks))}
	for _, k := range ks {
		jwk := jose.JSONWebKey{KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
		if k.ec != nil {
			jwk.Key = k.ec
		} else {
			jwk.Key = k.rsa
		}
		set.Keys = append(set.Keys, jwk)
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("keys: marshal JWKS: %w", err)
	}
	return b, until, nil
}
