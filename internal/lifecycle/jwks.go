package lifecycle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// AssertionAlgs are the JWS algorithms accepted for client assertions (RFC 7523). The
// list is an allow-list: "none", HMAC and anything else are refused before any key is
// looked at.
var AssertionAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256}

// maxJWKSKeys bounds the keys one agent may register; a rotation overlap needs two.
const maxJWKSKeys = 10

// ParseJWKS decodes and checks an agent's public JSON Web Key Set: at least one key, at
// most 10, each a public P-256 EC or ≥2048-bit RSA signing key with a unique kid and, if
// it names one, an allowed alg. Private key material is refused outright: an agent's
// private key must never reach Lanyard.
func ParseJWKS(raw []byte) (*jose.JSONWebKeySet, error) {
	// Decode key by key so the error names the offending key.
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %v", err)
	}
	if len(doc.Keys) == 0 {
		return nil, fmt.Errorf("must contain at least one key")
	}
	if len(doc.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("must contain at most %d keys", maxJWKSKeys)
	}
	set := &jose.JSONWebKeySet{}
	seen := map[string]bool{}
	for i, rk := range doc.Keys {
		var probe struct {
			D string `json:"d"`
		}
		_ = json.Unmarshal(rk, &probe)
		if probe.D != "" {
			return nil, fmt.Errorf("keys[%d] contains private key material; register public keys only", i)
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(rk); err != nil {
			return nil, fmt.Errorf("keys[%d]: %v", i, err)
		}
		if !k.IsPublic() {
			return nil, fmt.Errorf("keys[%d] contains private key material; register public keys only", i)
		}
		if k.KeyID == "" {
			return nil, fmt.Errorf("keys[%d] has no kid", i)
		}
		if seen[k.KeyID] {
			return nil, fmt.Errorf("keys[%d]: kid %q is used twice", i, k.KeyID)
		}
		seen[k.KeyID] = true
		if k.Use != "" && k.Use != "sig" {
			return nil, fmt.Errorf("keys[%d]: use %q is not sig", i, k.Use)
		}
		switch pub := k.Key.(type) {
		case *ecdsa.PublicKey:
			if pub.Curve != elliptic.P256() {
				return nil, fmt.Errorf("keys[%d]: EC keys must use curve P-256", i)
			}
			if k.Algorithm != "" && k.Algorithm != string(jose.ES256) {
				return nil, fmt.Errorf("keys[%d]: alg %q does not fit a P-256 key; use ES256", i, k.Algorithm)
			}
		case *rsa.PublicKey:
			if pub.N.BitLen() < 2048 {
				return nil, fmt.Errorf("keys[%d]: RSA keys must have at least 2048 bits", i)
			}
			if k.Algorithm != "" && k.Algorithm != string(jose.RS256) && k.Algorithm != string(jose.PS256) {
				return nil, fmt.Errorf("keys[%d]: alg %q does not fit an RSA key; use RS256 or PS256", i, k.Algorithm)
			}
		default:
			return nil, fmt.Errorf("keys[%d]: key type %T is not supported; use EC P-256 or RSA", i, k.Key)
		}
		set.Keys = append(set.Keys, k)
	}
	return set, nil
}

// KeyAllows reports whether key k may verify a signature made with alg.
func KeyAllows(k *jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" {
		return k.Algorithm == alg
	}
	switch k.Key.(type) {
	case *ecdsa.PublicKey:
		return alg == string(jose.ES256)
	case *rsa.PublicKey:
		return alg == string(jose.RS256) || alg == string(jose.PS256)
	}
	return false
}
