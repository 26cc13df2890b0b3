// Package entratest is an in-process stand-in for Microsoft Entra ID, for tests: one
// tenant's v1 and v2 OpenID discovery documents, a JWKS of rotating RSA keys, tokens of
// Entra's v1 and v2 shapes (tid, oid, azp/appid, idtyp, ver, uti), and a v2 token
// endpoint that accepts workload identity federation (a client assertion from an
// external issuer, validated the way Entra documents: iss, sub and aud exact against a
// federated identity credential, RS256, keys from the issuer's discovery and JWKS).
//
// It serves the same routes over plain HTTP (URL) and HTTPS (TLSURL, for clients such
// as MSAL that insist on https); documents name the scheme and host they were asked on.
package entratest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/google/uuid"
)

// Server is a fake Entra ID tenant.
type Server struct {
	Tenant string
	plain  *httptest.Server
	tls    *httptest.Server

	mu        sync.Mutex
	keys      []*signingKey // published, newest last
	pending   *signingKey   // signs tokens, not yet published (rotation in progress)
	ec        *signingKey   // an ES256 key Entra would never use
	fics      []FederatedCredential
	jwksCalls atomic.Int64
	down      atomic.Bool
	now       func() time.Time
}

type signingKey struct {
	kid  string
	priv any
}

// New starts a fake tenant; it stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{Tenant: uuid.NewString(), now: time.Now}
	s.keys = []*signingKey{newRSA(t)}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.ec = &signingKey{kid: "ec-" + randID(), priv: ek}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.discovery("2.0"))
	mux.HandleFunc("GET /{tenant}/.well-known/openid-configuration", s.discovery("1.0"))
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", s.jwks)
	mux.HandleFunc("GET /{tenant}/discovery/keys", s.jwks)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.token)
	s.plain = httptest.NewServer(mux)
	s.tls = httptest.NewTLSServer(mux)
	t.Cleanup(s.plain.Close)
	t.Cleanup(s.tls.Close)
	return s
}

func newRSA(t testing.TB) *signingKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &signingKey{kid: randID(), priv: k}
}

func randID() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// URL is the plain-HTTP base URL; TLSURL the HTTPS one (see TLSClient).
func (s *Server) URL() string    { return s.plain.URL }
func (s *Server) TLSURL() string { return s.tls.URL }

// TLSClient trusts the HTTPS server's certificate.
func (s *Server) TLSClient() *http.Client { return s.tls.Client() }

// IssuerV2 is https://login.microsoftonline.com/{tenant}/v2.0 in this fake (over HTTP).
func (s *Server) IssuerV2() string { return s.plain.URL + "/" + s.Tenant + "/v2.0" }

// IssuerV1 is https://sts.windows.net/{tenant}/ in this fake (over HTTP).
func (s *Server) IssuerV1() string { return s.plain.URL + "/" + s.Tenant + "/" }

// Authority is the MSAL authority of the tenant (HTTPS).
func (s *Server) Authority() string { return s.tls.URL + "/" + s.Tenant }

// SetDown makes the discovery and JWKS endpoints answer 503 (true) or work again.
func (s *Server) SetDown(down bool) { s.down.Store(down) }

// JWKSCalls counts JWKS requests served (including refused ones).
func (s *Server) JWKSCalls() int64 { return s.jwksCalls.Load() }

// StartRotation creates a key that signs new tokens but is not yet published, as when
// a token names a kid the relying party has not seen. Publish completes the rotation.
func (s *Server) StartRotation(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = newRSA(t)
}

// Publish adds the pending key to the JWKS; it signs from now on.
func (s *Server) Publish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil {
		s.keys = append(s.keys, s.pending)
		s.pending = nil
	}
}

// TokenOptions shape a token; zero fields take an app-only token's defaults.
type TokenOptions struct {
	// Version is 1 (iss https://sts.windows.net/{tid}/, appid) or 2 (default; azp).
	Version int
	// ObjectID is both sub and oid (a managed identity's service principal).
	ObjectID string
	// Subject overrides sub when it must differ from oid.
	Subject  string
	Audience string
	// AppID is the managed identity's client id (azp in v2, appid in v1).
	AppID string
	// IDType is idtyp; "app" by default, "-" to omit it.
	IDType string
	// Tenant overrides tid.
	Tenant string
	// IssuedAt defaults to now; Lifetime (default 1h) sets exp; NotBefore defaults to iat.
	IssuedAt  time.Time
	NotBefore time.Time
	Lifetime  time.Duration
	// Alg is RS256 by default; "ES256" signs with an EC key.
	Alg string
	// UTI defaults to a random id.
	UTI string
}

// Token issues a signed token.
func (s *Server) Token(t testing.TB, o TokenOptions) string {
	t.Helper()
	iat := o.IssuedAt
	if iat.IsZero() {
		iat = s.now()
	}
	nbf := o.NotBefore
	if nbf.IsZero() {
		nbf = iat
	}
	life := o.Lifetime
	if life == 0 {
		life = time.Hour
	}
	tid := o.Tenant
	if tid == "" {
		tid = s.Tenant
	}
	sub := o.Subject
	if sub == "" {
		sub = o.ObjectID
	}
	uti := o.UTI
	if uti == "" {
		uti = randID()
	}
	claims := map[string]any{
		"aud": o.Audience, "sub": sub, "oid": o.ObjectID, "tid": tid,
		"iat": iat.Unix(), "nbf": nbf.Unix(), "exp": iat.Add(life).Unix(),
		"uti": uti, "rh": "0.fake.", "roles": []string{"Agent.Run"},
	}
	switch o.IDType {
	case "":
		claims["idtyp"] = "app"
	case "-":
	default:
		claims["idtyp"] = o.IDType
	}
	if o.Version == 1 {
		claims["iss"], claims["ver"], claims["appid"], claims["appidacr"] = s.IssuerV1(), "1.0", o.AppID, "2"
	} else {
		claims["iss"], claims["ver"], claims["azp"], claims["azpacr"] = s.IssuerV2(), "2.0", o.AppID, "2"
	}
	return s.sign(t, claims, o.Alg)
}

func (s *Server) sign(t testing.TB, claims map[string]any, alg string) string {
	t.Helper()
	s.mu.Lock()
	key := s.keys[len(s.keys)-1]
	if s.pending != nil {
		key = s.pending
	}
	if alg == "ES256" {
		key = s.ec
	}
	s.mu.Unlock()
	if alg == "" {
		alg = "RS256"
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", key.kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func base(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

func (s *Server) discovery(ver string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
			return
		}
		tenant := r.PathValue("tenant")
		if tenant != s.Tenant {
			http.Error(w, `{"error":"invalid_tenant"}`, http.StatusBadRequest)
			return
		}
		b := base(r) + "/" + tenant
		doc := map[string]any{
			"token_endpoint":                        b + "/oauth2/v2.0/token",
			"authorization_endpoint":                b + "/oauth2/v2.0/authorize",
			"jwks_uri":                              b + "/discovery/v2.0/keys",
			"issuer":                                b + "/v2.0",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
			"subject_types_supported":               []string{"pairwise"},
			"tenant_region_scope":                   "EU",
		}
		if ver == "1.0" {
			doc["issuer"] = b + "/"
			doc["jwks_uri"] = b + "/discovery/keys"
			doc["token_endpoint"] = b + "/oauth2/token"
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(doc)
	}
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	s.jwksCalls.Add(1)
	if s.down.Load() {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	set := jose.JSONWebKeySet{}
	for _, k := range s.keys {
		pub := k.priv.(*rsa.PrivateKey).Public()
		// Entra's keys carry kid, use and x5t-like ids but no alg.
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: k.kid, Use: "sig"})
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(set)
}

// FederatedCredential is a federated identity credential on an app registration or a
// user-assigned managed identity.
type FederatedCredential struct {
	// ClientID is the application (client) id the credential belongs to.
	ClientID string
	Issuer   string
	Subject  string
	// Audience is api://AzureADTokenExchange unless set.
	Audience string
	// HTTPClient fetches the issuer's discovery and JWKS. Default http.DefaultClient.
	HTTPClient *http.Client
}

// AddFederatedCredential is `az ad app federated-credential create`.
func (s *Server) AddFederatedCredential(f FederatedCredential) {
	if f.Audience == "" {
		f.Audience = "api://AzureADTokenExchange"
	}
	if f.HTTPClient == nil {
		f.HTTPClient = http.DefaultClient
	}
	s.mu.Lock()
	s.fics = append(s.fics, f)
	s.mu.Unlock()
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": code, "error_description": desc, "error_codes": []int{0}})
}

// token is the v2 token endpoint's client_credentials grant with a federated client
// assertion.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, 400, "invalid_request", "AADSTS900144: malformed body")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" {
		tokenError(w, 400, "unsupported_grant_type", "AADSTS70003: only client_credentials here")
		return
	}
	if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || f.Get("client_assertion") == "" {
		tokenError(w, 401, "invalid_client", "AADSTS7000218: client_assertion or client_secret is required")
		return
	}
	// MSAL adds the OIDC scopes (openid profile offline_access) to every request.
	var scope string
	for _, sc := range strings.Fields(f.Get("scope")) {
		if strings.HasSuffix(sc, "/.default") {
			scope = sc
		}
	}
	if scope == "" {
		tokenError(w, 400, "invalid_scope", "AADSTS1002012: the scope must end in /.default for client credentials")
		return
	}
	clientID := f.Get("client_id")
	claims, err := s.validateAssertion(r, clientID, f.Get("client_assertion"))
	if err != nil {
		tokenError(w, 401, "invalid_client", err.Error())
		return
	}
	now := s.now()
	at := s.sign(&noT{}, map[string]any{
		"iss": base(r) + "/" + s.Tenant + "/v2.0", "aud": strings.TrimSuffix(scope, "/.default"),
		"sub": "sp-" + clientID, "oid": "sp-" + clientID, "tid": s.Tenant, "azp": clientID, "idtyp": "app",
		"ver": "2.0", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "uti": randID(),
		"xms_fed_sub": claims["sub"],
	}, "")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": at})
}

// noT lets sign run outside a test (it never fails with our own keys).
type noT struct{ testing.TB }

func (*noT) Helper()               {}
func (*noT) Fatal(args ...any)     { panic(fmt.Sprint(args...)) }
func (*noT) Fatalf(string, ...any) { panic("entratest: sign") }

// validateAssertion checks an external token as Entra's workload identity federation
// does: a federated identity credential of the client whose issuer, subject and audience
// equal the token's iss, sub and aud exactly; the token signed RS256 by a key of the
// issuer's JWKS (kid required, use "sig"), found through the issuer's discovery; within
// its validity; and, as Lanyard promises for Entra, with a lifetime of at most 1 hour.
func (s *Server) validateAssertion(r *http.Request, clientID, raw string) (map[string]any, error) {
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("AADSTS50027: the assertion is not an RS256 JWT: %v", err)
	}
	var unverified struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, fmt.Errorf("AADSTS50027: malformed claims")
	}
	s.mu.Lock()
	var fic *FederatedCredential
	for i := range s.fics {
		if s.fics[i].ClientID == clientID && s.fics[i].Issuer == unverified.Iss {
			fic = &s.fics[i]
		}
	}
	s.mu.Unlock()
	if fic == nil {
		return nil, fmt.Errorf("AADSTS70021: No matching federated identity record found for presented assertion issuer '%s'", unverified.Iss)
	}
	kid := jws.Signatures[0].Header.KeyID
	if kid == "" {
		return nil, fmt.Errorf("AADSTS5002738: the assertion has no kid")
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(r, fic.HTTPClient, strings.TrimSuffix(fic.Issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
		return nil, fmt.Errorf("AADSTS50166: request to the external OIDC endpoint failed: %v", err)
	}
	if doc.Issuer != fic.Issuer {
		return nil, fmt.Errorf("AADSTS700211: the discovery document's issuer %q is not %q", doc.Issuer, fic.Issuer)
	}
	var set jose.JSONWebKeySet
	if err := getJSON(r, fic.HTTPClient, doc.JWKSURI, &set); err != nil {
		return nil, fmt.Errorf("AADSTS50166: request to the external JWKS failed: %v", err)
	}
	keys := set.Key(kid)
	if len(keys) != 1 || keys[0].Use != "sig" {
		return nil, fmt.Errorf("AADSTS700027: no signing key (use sig) with kid %q in the issuer's JWKS", kid)
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		return nil, fmt.Errorf("AADSTS700027: the assertion's signature does not verify")
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("AADSTS50027: malformed claims")
	}
	now := s.now().Unix()
	exp, _ := c["exp"].(float64)
	iat, _ := c["iat"].(float64)
	nbf, hasNbf := c["nbf"].(float64)
	aud := c["aud"]
	switch {
	case c["iss"] != fic.Issuer:
		return nil, fmt.Errorf("AADSTS700211: No matching federated identity record found for presented assertion issuer")
	case c["sub"] != fic.Subject:
		return nil, fmt.Errorf("AADSTS700213: No matching federated identity record found for presented assertion subject '%v'", c["sub"])
	case aud != fic.Audience && !(isList(aud) && len(aud.([]any)) == 1 && aud.([]any)[0] == fic.Audience):
		return nil, fmt.Errorf("AADSTS700212: No matching federated identity record found for presented assertion audience '%v'", aud)
	case exp == 0 || int64(exp) < now-300:
		return nil, fmt.Errorf("AADSTS700024: Client assertion is not within its valid time range")
	case hasNbf && int64(nbf) > now+300:
		return nil, fmt.Errorf("AADSTS700024: Client assertion is not within its valid time range")
	case iat == 0 || exp-iat > 3600:
		return nil, fmt.Errorf("AADSTS700024: the assertion's lifetime exceeds 1 hour")
	}
	return c, nil
}

func isList(v any) bool { _, ok := v.([]any); return ok }

func getJSON(r *http.Request, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
