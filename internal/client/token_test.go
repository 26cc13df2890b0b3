package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
	})
	return rsaKey
}

func testECKey(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func jwk(t *testing.T, key any, alg string) *jose.JSONWebKey {
	t.Helper()
	k := &jose.JSONWebKey{Key: key, Algorithm: alg, Use: "sig"}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	k.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return k
}

// verifyAssertion checks an assertion the way a server does and returns its claims.
func verifyAssertion(t *testing.T, raw string, key *jose.JSONWebKey, wantAlg string) jwt.Claims {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256})
	if err != nil {
		t.Fatalf("parse assertion: %v", err)
	}
	h := tok.Headers[0]
	if h.Algorithm != wantAlg || h.KeyID != key.KeyID {
		t.Errorf("header alg=%s kid=%s, want %s %s", h.Algorithm, h.KeyID, wantAlg, key.KeyID)
	}
	pub := key.Public()
	var c jwt.Claims
	if err := tok.Claims(pub.Key, &c); err != nil {
		t.Fatalf("assertion signature: %v", err)
	}
	return c
}

func TestSignAssertion(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	tests := []struct {
		name    string
		key     *jose.JSONWebKey
		wantAlg string
		wantErr string
	}{
		{name: "ES256 from curve", key: jwk(t, testECKey(t, elliptic.P256()), ""), wantAlg: "ES256"},
		{name: "ES256 declared", key: jwk(t, testECKey(t, elliptic.P256()), "ES256"), wantAlg: "ES256"},
		{name: "RS256 default for RSA", key: jwk(t, testRSAKey(t), ""), wantAlg: "RS256"},
		{name: "PS256 declared", key: jwk(t, testRSAKey(t), "PS256"), wantAlg: "PS256"},
		{name: "alg does not fit EC key", key: jwk(t, testECKey(t, elliptic.P256()), "RS256"), wantErr: "is an EC P-256 key"},
		{name: "alg does not fit RSA key", key: jwk(t, testRSAKey(t), "ES256"), wantErr: "RS256 or PS256"},
		{name: "public key", key: jwk(t, testECKey(t, elliptic.P256()).Public(), ""), wantErr: "public key"},
		{name: "unsupported curve", key: jwk(t, testECKey(t, elliptic.P521()), ""), wantErr: "P-521"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := SignAssertion(tt.key, "cli_1", "http://issuer", now, time.Minute)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := verifyAssertion(t, raw, tt.key, tt.wantAlg)
			if c.Issuer != "cli_1" || c.Subject != "cli_1" || len(c.Audience) != 1 || c.Audience[0] != "http://issuer" ||
				!c.IssuedAt.Time().Equal(now) || !c.Expiry.Time().Equal(now.Add(time.Minute)) || len(c.ID) < 16 {
				t.Errorf("claims = %+v", c)
			}
		})
	}
}

func TestAssertionSignerUniqueJTIAndLifetime(t *testing.T) {
	key := jwk(t, testECKey(t, elliptic.P256()), "ES256")
	s, err := NewAssertionSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 50 {
		raw, err := s.Sign("cli_1", "aud", time.Now(), 4*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		c := verifyAssertion(t, raw, key, "ES256")
		if seen[c.ID] {
			t.Fatalf("jti %s repeated", c.ID)
		}
		seen[c.ID] = true
	}
	for _, d := range []time.Duration{0, -time.Second, MaxAssertionLifetime + time.Second} {
		if _, err := s.Sign("cli_1", "aud", time.Now(), d); err == nil {
			t.Errorf("lifetime %s accepted", d)
		}
	}
}

// tokenServer serves discovery and a token endpoint that hands each request to h.
func tokenServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, issuer string)) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer") {
			t.Errorf("%s: admin token sent to a non-admin endpoint", r.URL.Path)
		}
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			writeJSON(w, 200, `{"issuer":"`+srv.URL+`","token_endpoint":"`+srv.URL+`/oauth2/token","jwks_uri":"`+srv.URL+`/oauth2/jwks"}`)
		case "/oauth2/token":
			h(w, r, srv.URL)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRequestTokenPrivateKeyJWT(t *testing.T) {
	key := jwk(t, testECKey(t, elliptic.P256()), "ES256")
	srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request, issuer string) {
		if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			t.Errorf("Content-Type = %q", ct)
		}
		if err := r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		f := r.PostForm
		if f.Get("grant_type") != "client_credentials" || f.Get("client_id") != "cli_1" ||
			f.Get("scope") != "invoices:read erp:post" || strings.Join(f["resource"], ",") != "https://a.example,https://b.example" ||
			f.Get("client_assertion_type") != JWTBearerAssertionType {
			t.Errorf("form = %v", f)
		}
		c := verifyAssertion(t, f.Get("client_assertion"), key, "ES256")
		if c.Audience[0] != issuer {
			t.Errorf("aud = %v, want the discovered issuer %s", c.Audience, issuer)
		}
		if d := c.Expiry.Time().Sub(c.IssuedAt.Time()); d != DefaultAssertionLifetime {
			t.Errorf("lifetime = %s", d)
		}
		writeJSON(w, 200, `{"access_token":"at","token_type":"Bearer","expires_in":300,"scope":"invoices:read erp:post"}`)
	})
	c := New(srv.URL, "admin-token-must-not-leak", srv.Client())
	res, err := c.RequestToken(context.Background(), TokenRequest{
		ClientID: "cli_1", Key: key,
		Scopes:    []string{"invoices:read", "erp:post"},
		Resources: []string{"https://a.example", "https://b.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.AccessToken != "at" || res.ExpiresIn != 300 || res.TokenType != "Bearer" || len(res.Raw) == 0 {
		t.Errorf("response = %+v", res)
	}
}

func TestRequestTokenExplicitURLUsesItAsAudience(t *testing.T) {
	key := jwk(t, testECKey(t, elliptic.P256()), "")
	var tokenURL string
	srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request, issuer string) {
		r.ParseForm()
		if c := verifyAssertion(t, r.PostForm.Get("client_assertion"), key, "ES256"); c.Audience[0] != tokenURL {
			t.Errorf("aud = %v, want %s", c.Audience, tokenURL)
		}
		writeJSON(w, 200, `{"access_token":"at","token_type":"Bearer"}`)
	})
	tokenURL = srv.URL + "/oauth2/token"
	if _, err := New(srv.URL, "", srv.Client()).RequestToken(context.Background(), TokenRequest{TokenURL: tokenURL, ClientID: "cli_1", Key: key}); err != nil {
		t.Fatal(err)
	}
}

func TestRequestTokenClientSecretBasic(t *testing.T) {
	srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request, issuer string) {
		user, pass, ok := r.BasicAuth()
		// RFC 6749 §2.3.1: both parts are form-encoded inside Basic.
		id, _ := url.QueryUnescape(user)
		secret, _ := url.QueryUnescape(pass)
		if !ok || id != "cli:1" || secret != "a+b/c=" || pass != "a%2Bb%2Fc%3D" {
			t.Errorf("basic auth = %q %q %v", user, pass, ok)
		}
		r.ParseForm()
		if r.PostForm.Has("client_assertion") {
			t.Error("assertion sent with a secret")
		}
		writeJSON(w, 200, `{"access_token":"at","token_type":"Bearer"}`)
	})
	if _, err := New(srv.URL, "", srv.Client()).RequestToken(context.Background(), TokenRequest{ClientID: "cli:1", ClientSecret: "a+b/c="}); err != nil {
		t.Fatal(err)
	}
}

func TestRequestTokenErrors(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		status                  int
		wantCode, wantInError   string
	}{
		{"oauth error", "application/json", `{"error":"invalid_client","error_description":"assertion expired"}`, 401,
			"invalid_client", "token endpoint answered 401: invalid_client: assertion expired"},
		{"invalid scope", "application/json;charset=UTF-8", `{"error":"invalid_scope","error_description":"scope erp:post is not allowed"}`, 400,
			"invalid_scope", "invalid_scope: scope erp:post is not allowed"},
		{"plain text", "text/plain", "upstream down", 503, "", "token endpoint answered 503: upstream down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request, issuer string) {
				w.Header().Set("Content-Type", tt.contentType)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			_, err := New(srv.URL, "", srv.Client()).RequestToken(context.Background(), TokenRequest{ClientID: "c", ClientSecret: "s"})
			var oe *OAuthError
			if !errors.As(err, &oe) {
				t.Fatalf("err = %v (%T), want *OAuthError", err, err)
			}
			if oe.Code != tt.wantCode || oe.StatusCode != tt.status || !strings.Contains(err.Error(), tt.wantInError) {
				t.Errorf("err = %q (code %q)", err, oe.Code)
			}
		})
	}
}

func TestRequestTokenNeedsOneCredential(t *testing.T) {
	c := New("http://127.0.0.1:1", "", nil)
	key := jwk(t, testECKey(t, elliptic.P256()), "")
	for _, tr := range []TokenRequest{{ClientID: "c"}, {ClientID: "c", Key: key, ClientSecret: "s"}, {Key: key}} {
		if _, err := c.RequestToken(context.Background(), tr); err == nil {
			t.Errorf("%+v accepted", tr)
		}
	}
}

func TestDiscoverErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"issuer":"x"}`)
	}))
	defer srv.Close()
	if _, err := New(srv.URL, "", nil).Discover(context.Background()); err == nil || !strings.Contains(err.Error(), "token_endpoint") {
		t.Errorf("err = %v", err)
	}
}
