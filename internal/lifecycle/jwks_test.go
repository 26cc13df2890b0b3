package lifecycle_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
)

func TestParseJWKS(t *testing.T) {
	ec := &ecKey().PublicKey
	rsaPub := &rsaKey().PublicKey
	edPub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	eleven := make([]jose.JSONWebKey, 11)
	for i := range eleven {
		eleven[i] = publicJWK(ec, fmt.Sprintf("k%d", i), "")
	}
	tests := []struct {
		name    string
		raw     []byte
		wantErr string // substring; "" means valid
		kids    []string
	}{
		{"EC P-256", jwksOf(t, publicJWK(ec, "ec", "")), "", []string{"ec"}},
		{"EC P-256 ES256", jwksOf(t, publicJWK(ec, "ec", "ES256")), "", []string{"ec"}},
		{"RSA 2048 RS256", jwksOf(t, publicJWK(rsaPub, "rsa", "RS256")), "", []string{"rsa"}},
		{"RSA 2048 PS256", jwksOf(t, publicJWK(rsaPub, "rsa", "PS256")), "", []string{"rsa"}},
		{"two keys for rotation", jwksOf(t, publicJWK(ec, "old", ""), publicJWK(&ecKey2().PublicKey, "new", "")), "", []string{"old", "new"}},
		{"use sig", []byte(strings.Replace(string(jwksOf(t, publicJWK(ec, "ec", ""))), `"kid"`, `"use":"sig","kid"`, 1)), "", []string{"ec"}},
		{"ten keys", jwksOf(t, eleven[:10]...), "", nil},

		{"not JSON", []byte(`{"keys":`), "not a JSON Web Key Set", nil},
		{"keys not an array", []byte(`{"keys":{}}`), "not a JSON Web Key Set", nil},
		{"empty set", []byte(`{"keys":[]}`), "at least one key", nil},
		{"no keys member", []byte(`{}`), "at least one key", nil},
		{"eleven keys", jwksOf(t, eleven...), "at most 10", nil},
		{"private EC key", jwksOf(t, publicJWK(ecKey(), "ec", "")), "private key material", nil},
		{"private RSA key", jwksOf(t, publicJWK(rsaKey(), "rsa", "")), "private key material", nil},
		{"symmetric key", []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}`), "keys[0]", nil},
		{"Ed25519 key", jwksOf(t, publicJWK(edPub, "ed", "")), "not supported", nil},
		{"no kid", jwksOf(t, publicJWK(ec, "", "")), "has no kid", nil},
		{"duplicate kid", jwksOf(t, publicJWK(ec, "k", ""), publicJWK(rsaPub, "k", "")), `keys[1]: kid "k" is used twice`, nil},
		{"use enc", []byte(strings.Replace(string(jwksOf(t, publicJWK(ec, "ec", ""))), `"kid"`, `"use":"enc","kid"`, 1)), "is not sig", nil},
		{"EC P-384", jwksOf(t, publicJWK(&p384Key().PublicKey, "p384", "")), "curve P-256", nil},
		{"RSA 1024", jwksOf(t, publicJWK(&rsa1024().PublicKey, "rsa", "")), "at least 2048 bits", nil},
		{"EC with RS256", jwksOf(t, publicJWK(ec, "ec", "RS256")), "does not fit a P-256 key", nil},
		{"RSA with ES256", jwksOf(t, publicJWK(rsaPub, "rsa", "ES256")), "does not fit an RSA key", nil},
		{"RSA with HS256", []byte(strings.Replace(string(jwksOf(t, publicJWK(rsaPub, "rsa", "RS256"))), `"RS256"`, `"HS256"`, 1)), "does not fit an RSA key", nil},
		{"bad second key named", jwksOf(t, publicJWK(ec, "ok", ""), publicJWK(&p384Key().PublicKey, "bad", "")), "keys[1]", nil},
		{"malformed key", []byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"x","x":"!!","y":"!!"}]}`), "keys[0]", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := lifecycle.ParseJWKS(tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseJWKS = %v, %v; want error containing %q", set, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseJWKS: %v", err)
			}
			for i, k := range set.Keys {
				if !k.IsPublic() {
					t.Errorf("key %d is not public", i)
				}
				if tt.kids != nil && k.KeyID != tt.kids[i] {
					t.Errorf("key %d kid %q, want %q", i, k.KeyID, tt.kids[i])
				}
			}
			if tt.kids != nil && len(set.Keys) != len(tt.kids) {
				t.Errorf("%d keys, want %d", len(set.Keys), len(tt.kids))
			}
			// What ParseJWKS returns is what Register stores and the token endpoint
			// parses again: it must round-trip.
			b, err := json.Marshal(set)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lifecycle.ParseJWKS(b); err != nil {
				t.Errorf("re-parsing the marshalled set: %v", err)
			}
		})
	}
}

func TestKeyAllows(t *testing.T) {
	ec := &ecKey().PublicKey
	rsaPub := &rsaKey().PublicKey
	tests := []struct {
		name string
		key  jose.JSONWebKey
		alg  string
		want bool
	}{
		{"EC no alg ES256", publicJWK(ec, "k", ""), "ES256", true},
		{"EC no alg RS256", publicJWK(ec, "k", ""), "RS256", false},
		{"EC no alg none", publicJWK(ec, "k", ""), "none", false},
		{"EC ES256 ES256", publicJWK(ec, "k", "ES256"), "ES256", true},
		{"RSA no alg RS256", publicJWK(rsaPub, "k", ""), "RS256", true},
		{"RSA no alg PS256", publicJWK(rsaPub, "k", ""), "PS256", true},
		{"RSA no alg HS256", publicJWK(rsaPub, "k", ""), "HS256", false},
		{"RSA pinned RS256 refuses PS256", publicJWK(rsaPub, "k", "RS256"), "PS256", false},
		{"RSA pinned PS256 refuses RS256", publicJWK(rsaPub, "k", "PS256"), "RS256", false},
		{"symmetric key", jose.JSONWebKey{Key: []byte("secret"), KeyID: "k"}, "HS256", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lifecycle.KeyAllows(&tt.key, tt.alg); got != tt.want {
				t.Errorf("KeyAllows(%s) = %v, want %v", tt.alg, got, tt.want)
			}
		})
	}
}

func TestAssertionAlgsAllowList(t *testing.T) {
	for _, alg := range lifecycle.AssertionAlgs {
		switch alg {
		case jose.ES256, jose.RS256, jose.PS256:
		default:
			t.Errorf("AssertionAlgs holds %s; only ES256, RS256 and PS256 are allowed", alg)
		}
	}
}

func ExampleParseJWKS() {
	// An agent registers the public half of its signing key; "d" (the private
	// exponent) must never be sent.
	raw := []byte(`{"keys":[{
		"kty":"EC","crv":"P-256","kid":"agent-2025-01","alg":"ES256","use":"sig",
		"x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
		"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	set, err := lifecycle.ParseJWKS(raw)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	k := set.Keys[0]
	_, isEC := k.Key.(*ecdsa.PublicKey)
	fmt.Println(k.KeyID, k.Algorithm, isEC, lifecycle.KeyAllows(&k, "ES256"), lifecycle.KeyAllows(&k, "RS256"))

	_, err = lifecycle.ParseJWKS([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k",
		"x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
		"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
		"d":"jpsQnnGQmL-YBIffH1136cLFtA2x-FbMOp9xdVdcRSc"}]}`))
	fmt.Println(err)
	// Output:
	// agent-2025-01 ES256 true true false
	// keys[0] contains private key material; register public keys only
}
