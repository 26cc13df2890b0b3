package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/secrets/local"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

type adminToken string

func (a adminToken) CheckAdminToken(_ context.Context, tok string) bool { return tok == string(a) }

type fixture struct {
	h   *Handler
	e   *echo.Echo
	aud *recorder
	now time.Time
}

func newFixture(t testing.TB, issuer string) *fixture {
	st := storetest.OpenSQLite(t)
	hasher, _ := lifecycle.NewSecretHasher(make([]byte, 32))
	dir := t.TempDir()
	mk, err := local.LoadMasterKey(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := local.New(filepath.Join(dir, "secrets"), mk)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{aud: &recorder{}, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	lc := lifecycle.New(st, f.aud, hasher, lifecycle.Options{Secrets: sb})
	// The agent page lists verdicts; nothing here attests, so the verdict signer is unused.
	att := attest.New(st, f.aud, lc, nil, attest.Options{})
	h, err := New(Deps{Lifecycle: lc, Attest: att, Audit: f.aud, Store: st, Admin: adminToken("the-admin-token")},
		Options{Issuer: issuer, SessionIdle: 30 * time.Minute, SessionMax: 2 * time.Hour, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.h, f.e = h, echo.New()
	h.Mount(f.e)
	return f
}

func (f *fixture) do(t testing.TB, method, path string, form url.Values, cookies []*http.Cookie, hdr map[string]string) *http.Response {
	t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec.Result()
}

func cookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signIn signs in with the admin token and returns the session cookie and CSRF token.
func (f *fixture) signIn(t testing.TB) (*http.Cookie, string) {
	t.Helper()
	page := f.do(t, "GET", "/ui/login", nil, nil, nil)
	lc := cookie(page, loginCSRFCookie)
	resp := f.do(t, "POST", "/ui/login/token", url.Values{"csrf_token": {lc.Value}, "token": {"the-admin-token"}}, []*http.Cookie{lc}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	sc := cookie(resp, "lanyard_session")
	if sc == nil {
		t.Fatal("no session cookie")
	}
	s, err := f.h.sess.load(t.Context(), &http.Request{Header: http.Header{"Cookie": {sc.String()}}}, store.UISessionUser)
	if err != nil {
		t.Fatal(err)
	}
	return sc, s.CSRF
}

func TestSecurityHeadersAndCookies(t *testing.T) {
	f := newFixture(t, "https://lanyard.example.com")
	resp := f.do(t, "GET", "/ui/login", nil, nil, nil)
	for h, want := range map[string]string{
		"Content-Security-Policy":   "script-src 'self'; style-src 'self'",
		"X-Frame-Options":           "DENY",
		"X-Content-Type-Options":    "nosniff",
		"Cache-Control":             "no-store",
		"Referrer-Policy":           "same-origin",
		"Strict-Transport-Security": "max-age=",
	} {
		if got := resp.Header.Get(h); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", h, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe") {
		t.Errorf("CSP allows unsafe sources: %s", csp)
	}
	f.h.sess.secure = true
	lc := cookie(resp, loginCSRFCookie)
	resp = f.do(t, "POST", "/ui/login/token", url.Values{"csrf_token": {lc.Value}, "token": {"the-admin-token"}}, []*http.Cookie{lc}, nil)
	sc := cookie(resp, "__Host-lanyard_session")
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/" || sc.Domain != "" {
		t.Fatalf("session cookie under TLS = %+v", sc)
	}
}

func TestBreakGlassSignIn(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	page := f.do(t, "GET", "/ui/login", nil, nil, nil)
	lc := cookie(page, loginCSRFCookie)
	// A token that differs from the cookie's in its first character (the token is
	// random base64url: replacing it with a fixed "x" left it unchanged one time in 64).
	wrong := "x" + lc.Value[1:]
	if lc.Value[0] == 'x' {
		wrong = "y" + lc.Value[1:]
	}
	tests := []struct {
		name    string
		form    url.Values
		cookies []*http.Cookie
		want    int
	}{
		{"no login CSRF cookie", url.Values{"csrf_token": {lc.Value}, "token": {"the-admin-token"}}, nil, http.StatusForbidden},
		{"wrong login CSRF token", url.Values{"csrf_token": {wrong}, "token": {"the-admin-token"}}, []*http.Cookie{lc}, http.StatusForbidden},
		{"wrong admin token", url.Values{"csrf_token": {lc.Value}, "token": {"guess"}}, []*http.Cookie{lc}, http.StatusUnauthorized},
		{"right admin token", url.Values{"csrf_token": {lc.Value}, "token": {"the-admin-token"}, "next": {"//evil.example/ui"}}, []*http.Cookie{lc}, http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.do(t, "POST", "/ui/login/token", tt.form, tt.cookies, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusSeeOther && resp.Header.Get("Location") != "/ui/" {
				t.Errorf("redirected to %q: an open redirect", resp.Header.Get("Location"))
			}
		})
	}
	if got := strings.Join(f.aud.types(), ","); got != "admin.auth_failed,ui.signed_in" {
		t.Errorf("audit events = %s", got)
	}
}

func TestCSRFAndCrossOrigin(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	sc, csrf := f.signIn(t)
	for _, tt := range []struct {
		name string
		form url.Values
		hdr  map[string]string
		want int
	}{
		{"no token", url.Values{}, nil, http.StatusForbidden},
		{"wrong token", url.Values{"csrf_token": {csrf + "x"}}, nil, http.StatusForbidden},
		{"cross-site with the token", url.Values{"csrf_token": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same origin with the token", url.Values{"csrf_token": {csrf}}, map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusSeeOther},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if resp := f.do(t, "POST", "/ui/logout", tt.form, []*http.Cookie{sc}, tt.hdr); resp.StatusCode != tt.want {
				t.Errorf("logout: %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	// Signed out: the cookie no longer works.
	if resp := f.do(t, "GET", "/ui/agents", nil, []*http.Cookie{sc}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out: %d", resp.StatusCode)
	}
}

func TestSessionTimeouts(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	get := func(sc *http.Cookie) int {
		return f.do(t, "GET", "/ui/agents", nil, []*http.Cookie{sc}, nil).StatusCode
	}

	sc, _ := f.signIn(t)
	f.now = f.now.Add(29 * time.Minute)
	if code := get(sc); code != 200 {
		t.Fatalf("within the idle timeout: %d", code)
	}
	f.now = f.now.Add(29 * time.Minute) // 58 minutes in, 29 since the last request
	if code := get(sc); code != 200 {
		t.Fatalf("activity must extend the session: %d", code)
	}
	f.now = f.now.Add(31 * time.Minute)
	if code := get(sc); code != http.StatusSeeOther {
		t.Fatalf("after 31 idle minutes: %d, want a redirect to sign-in", code)
	}

	sc, _ = f.signIn(t)
	for range 5 { // active every 25 minutes, but past the 2h absolute limit
		f.now = f.now.Add(25 * time.Minute)
		get(sc)
	}
	if code := get(sc); code != http.StatusSeeOther {
		t.Fatalf("after the absolute timeout: %d", code)
	}
}

func TestDeniedIsAClearPage(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	ctx := authz.WithPrincipal(context.Background(), &authz.Principal{Name: "vic", Grants: []authz.Grant{{Role: authz.Viewer}}})
	c := f.e.NewContext(httptest.NewRequest("GET", "/ui/agents/new", nil).WithContext(ctx), httptest.NewRecorder())
	rec := c.Response().Writer.(*httptest.ResponseRecorder)
	_ = f.h.renderError(c, &authz.DeniedError{Principal: "vic", Permission: authz.RegisterAgents})
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "You (vic) may not register agents in every namespace.") {
		t.Errorf("denial page: %d %s", rec.Code, rec.Body)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/agents?q=x": "/ui/agents?q=x",
		"":               "/ui/",
		"/v1/agents":     "/ui/",
		"//evil/ui":      "/ui/",
		"https://evil":   "/ui/",
		"/ui\\@evil":     "/ui/",
		"/ui/\r\nX: y":   "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNiceMax(t *testing.T) {
	for in, want := range map[int64]int64{0: 2, 1: 2, 3: 5, 7: 10, 11: 20, 180: 200, 501: 1000, 5000: 5000} {
		if got := niceMax(in); got != want {
			t.Errorf("niceMax(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestAuditPageVerifiesTheChain(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	sc, _ := f.signIn(t)
	st := f.h.d.Store.(store.Store)
	log := audit.New(st, slog.New(slog.DiscardHandler), audit.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- log.Run(ctx) }()
	for i := range 3 {
		if err := log.Record(t.Context(), audit.Event{Type: "test.event", Actor: "admin", Outcome: "success", Reason: fmt.Sprint("event ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	body := func(path string) string {
		t.Helper()
		resp := f.do(t, "GET", path, nil, []*http.Cookie{sc}, nil)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		return string(b)
	}
	if b := body("/ui/audit"); !strings.Contains(b, "Chain verified.</strong> All 3 events") || !strings.Contains(b, "event 2") {
		t.Errorf("the audit page does not show the verified chain and its events")
	}
	old := autoVerifyMax
	autoVerifyMax = 2
	defer func() { autoVerifyMax = old }()
	if b := body("/ui/audit"); !strings.Contains(b, "Verify the chain now") {
		t.Error("a long log must be verified on request")
	}
	if b := body("/ui/audit?verify=1&outcome=success"); !strings.Contains(b, "All 3 events") {
		t.Error("verify=1 must verify")
	}
	if b := body("/ui/audit?outcome=maybe"); !strings.Contains(b, "Outcome must be success or failure") {
		t.Error("a bad filter must be explained")
	}
}

// signInAs starts a session for p directly (as a successful OIDC sign-in does).
func (f *fixture) signInAs(t *testing.T, p *authz.Principal) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := f.h.sess.create(t.Context(), rec, store.UISessionUser, &session{Principal: p, CSRF: randomToken()}); err != nil {
		t.Fatal(err)
	}
	return cookie(rec.Result(), "lanyard_session")
}

func TestNamespaceScopedViewer(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	ids := map[string]string{}
	for _, ns := range []string{"finance", "hr"} {
		r, err := f.h.d.Lifecycle.Register(t.Context(), "admin", lifecycle.RegisterRequest{Name: "agent-" + ns, Namespace: ns, Owner: "o",
			Credential: &lifecycle.CredentialRequest{Type: "client_secret"}})
		if err != nil {
			t.Fatal(err)
		}
		ids[ns] = r.Agent.ID
	}
	sc := f.signInAs(t, &authz.Principal{Subject: "oidc:x#1", Name: "fay", Method: "oidc",
		Grants: []authz.Grant{{Role: authz.Viewer, Namespaces: []string{"finance"}}}})
	get := func(path string) (int, string) {
		resp := f.do(t, "GET", path, nil, []*http.Cookie{sc}, nil)
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/ui/agents")
	if code != 200 || !strings.Contains(body, "agent-finance") || strings.Contains(body, "agent-hr") {
		t.Errorf("fleet list of a finance viewer: %d, finance shown %v, hr shown %v", code, strings.Contains(body, "agent-finance"), strings.Contains(body, "agent-hr"))
	}
	if code, _ := get("/ui/agents?namespace=hr"); code != 403 {
		t.Errorf("filtering on another namespace: %d, want 403", code)
	}
	if code, _ := get("/ui/agents/" + ids["hr"]); code != 404 {
		t.Errorf("an agent of another namespace: %d, want 404 (its existence must not leak)", code)
	}
	if code, _ := get("/ui/agents/" + ids["finance"] + "/suspend"); code != 403 {
		t.Errorf("a viewer's suspend page: %d, want 403", code)
	}
	if code, _ := get("/ui/audit"); code != 403 {
		t.Errorf("the fleet-wide audit log for a scoped viewer: %d, want 403", code)
	}
	if code, body := get("/ui/"); code != 200 || !strings.Contains(body, "fleet-wide dashboard needs a role in every namespace") {
		t.Errorf("dashboard for a scoped viewer: %d", code)
	}
	if code, _ := get("/ui/agents/new"); code != 403 {
		t.Errorf("the registration form for a viewer: %d, want 403", code)
	}
}

func TestSettingsPage(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	admin, _ := f.signIn(t)
	resp := f.do(t, "GET", "/ui/settings", nil, []*http.Cookie{admin}, nil)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "Not configured: only the bootstrap admin token signs in") ||
		!strings.Contains(string(b), "http://localhost:8080/ui/auth/callback") {
		t.Errorf("settings for an admin: %d %s", resp.StatusCode, b)
	}
	op := f.signInAs(t, &authz.Principal{Name: "op", Method: "oidc", Grants: []authz.Grant{{Role: authz.Operator}}})
	if resp := f.do(t, "GET", "/ui/settings", nil, []*http.Cookie{op}, nil); resp.StatusCode != 403 {
		t.Errorf("settings for an operator: %d, want 403", resp.StatusCode)
	}
}

func TestBreakGlassFailuresAreLimited(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	page := f.do(t, "GET", "/ui/login", nil, nil, nil)
	lc := cookie(page, loginCSRFCookie)
	try := func(token string) int {
		return f.do(t, "POST", "/ui/login/token", url.Values{"csrf_token": {lc.Value}, "token": {token}}, []*http.Cookie{lc}, nil).StatusCode
	}
	for i := range failureBurst {
		if code := try("guess"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, code)
		}
	}
	if code := try("guess"); code != http.StatusTooManyRequests {
		t.Errorf("after %d failures: %d, want 429", failureBurst, code)
	}
	if code := try("the-admin-token"); code != http.StatusTooManyRequests {
		t.Errorf("even the right token waits once the address is blocked: %d", code)
	}
}
