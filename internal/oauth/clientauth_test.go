package oauth

import (
	"encoding/base64"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/protocol"
)

func TestSelectKey(t *testing.T) {
	ec1 := jose.JSONWebKey{Key: &ecKey().PublicKey, KeyID: "ec1"}
	ec2 := jose.JSONWebKey{Key: &ecKey2().PublicKey, KeyID: "ec2", Algorithm: "ES256"}
	rsaAny := jose.JSONWebKey{Key: &rsaKey().PublicKey, KeyID: "rsa"}
	rsaPS := jose.JSONWebKey{Key: &rsaKey().PublicKey, KeyID: "rsa-ps", Algorithm: "PS256"}
	tests := []struct {
		name    string
		keys    []jose.JSONWebKey
		kid     string
		alg     string
		wantKID string
		reason  string // the refusal; "" when a key is found
	}{
		{"kid match", []jose.JSONWebKey{ec1, ec2}, "ec2", "ES256", "ec2", ""},
		{"kid match among types", []jose.JSONWebKey{ec1, rsaAny}, "rsa", "PS256", "rsa", ""},
		{"kid unknown", []jose.JSONWebKey{ec1, ec2}, "ec3", "ES256", "", "unknown_kid"},
		{"kid is case-sensitive", []jose.JSONWebKey{ec1}, "EC1", "ES256", "", "unknown_kid"},
		{"no kid, one key", []jose.JSONWebKey{ec1}, "", "ES256", "ec1", ""},
		{"no kid, one key fits the alg", []jose.JSONWebKey{ec1, rsaAny}, "", "RS256", "rsa", ""},
		{"no kid, two keys fit: ambiguous", []jose.JSONWebKey{ec1, ec2}, "", "ES256", "", "ambiguous_key"},
		{"no kid, no key fits", []jose.JSONWebKey{ec1, ec2}, "", "RS256", "", "key_alg_mismatch"},
		{"kid match, alg of another key type", []jose.JSONWebKey{ec1, rsaAny}, "ec1", "RS256", "", "key_alg_mismatch"},
		{"kid match, key pinned to another alg", []jose.JSONWebKey{rsaPS}, "rsa-ps", "RS256", "", "key_alg_mismatch"},
		{"no keys", nil, "ec1", "ES256", "", "no_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, perr := selectKey(tt.keys, tt.kid, tt.alg)
			if tt.reason == "" {
				if perr != nil {
					t.Fatalf("selectKey = %v, want key %s", perr, tt.wantKID)
				}
				if k.KeyID != tt.wantKID {
					t.Errorf("selected %s, want %s", k.KeyID, tt.wantKID)
				}
				return
			}
			if perr == nil {
				t.Fatalf("selectKey chose %s, want refusal %s", k.KeyID, tt.reason)
			}
			if perr.Code != protocol.ErrInvalidClient || perr.Reason != tt.reason {
				t.Errorf("refusal %s/%s (%s), want invalid_client/%s", perr.Code, perr.Reason, perr.Description, tt.reason)
			}
		})
	}
}

func TestAssertionHeader(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name    string
		raw     string
		wantAlg string
		wantKID string
		reason  string // "" when accepted
	}{
		{"ES256 with kid", enc(`{"alg":"ES256","kid":"k1","typ":"JWT"}`) + ".e30.c2ln", "ES256", "k1", ""},
		{"RS256 without kid", enc(`{"alg":"RS256"}`) + ".e30.c2ln", "RS256", "", ""},
		{"PS256", enc(`{"alg":"PS256"}`) + ".e30.c2ln", "PS256", "", ""},
		{"alg none", enc(`{"alg":"none"}`) + ".e30.", "", "", "assertion_alg"},
		{"alg None", enc(`{"alg":"None"}`) + ".e30.", "", "", "assertion_alg"},
		{"alg HS256", enc(`{"alg":"HS256","kid":"k1"}`) + ".e30.c2ln", "", "", "assertion_alg"},
		{"alg lower case", enc(`{"alg":"es256"}`) + ".e30.c2ln", "", "", "assertion_alg"},
		{"alg ES384", enc(`{"alg":"ES384"}`) + ".e30.c2ln", "", "", "assertion_alg"},
		{"alg missing", enc(`{"kid":"k1"}`) + ".e30.c2ln", "", "", "assertion_alg"},
		{"alg not a string", enc(`{"alg":256}`) + ".e30.c2ln", "", "", "malformed_assertion"},
		{"crit", enc(`{"alg":"ES256","crit":["exp"],"exp":1}`) + ".e30.c2ln", "", "", "assertion_crit"},
		{"crit empty", enc(`{"alg":"ES256","crit":[]}`) + ".e30.c2ln", "", "", "assertion_crit"},
		{"malformed base64", "eyJhbGciOiJFUzI1NiJ9!.e30.c2ln", "", "", "malformed_assertion"},
		{"padded base64", enc(`{"alg":"ES256"}`) + "==.e30.c2ln", "", "", "malformed_assertion"},
		{"header not JSON", enc(`alg=ES256`) + ".e30.c2ln", "", "", "malformed_assertion"},
		{"header a JSON array", enc(`["ES256"]`) + ".e30.c2ln", "", "", "malformed_assertion"},
		{"two parts", enc(`{"alg":"ES256"}`) + ".e30", "", "", "malformed_assertion"},
		{"four parts", enc(`{"alg":"ES256"}`) + ".e30.c2ln.c2ln", "", "", "malformed_assertion"},
		{"JWE (five parts)", enc(`{"alg":"RSA-OAEP","enc":"A256GCM"}`) + "....", "", "", "malformed_assertion"},
		{"empty header", ".e30.c2ln", "", "", "malformed_assertion"},
		{"empty", "", "", "", "malformed_assertion"},
		{"one part", enc(`{"alg":"ES256"}`), "", "", "malformed_assertion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alg, kid, perr := assertionHeader(tt.raw)
			if tt.reason == "" {
				if perr != nil {
					t.Fatalf("assertionHeader = %v", perr)
				}
				if alg != tt.wantAlg || kid != tt.wantKID {
					t.Errorf("alg %q kid %q, want %q %q", alg, kid, tt.wantAlg, tt.wantKID)
				}
				return
			}
			if perr == nil {
				t.Fatalf("assertionHeader accepted %q (alg %q)", tt.raw, alg)
			}
			if perr.Code != protocol.ErrInvalidClient || perr.Reason != tt.reason || perr.Status != 401 {
				t.Errorf("refusal %d %s/%s (%s), want 401 invalid_client/%s", perr.Status, perr.Code, perr.Reason, perr.Description, tt.reason)
			}
		})
	}
}
