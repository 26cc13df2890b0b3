package e2e

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/web/oidctest"
)

// newBrowser starts a headless Debian Chromium with a fresh profile. Without chromium
// the test skips, or fails when LANYARD_REQUIRE_SERVICES=1 (test/tools/install-chromium.sh
// installs it; make test and .ci/run call that script).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("LANYARD_REQUIRE_SERVICES") == "1" {
			t.Fatal("chromium is not installed (LANYARD_REQUIRE_SERVICES=1); run test/tools/install-chromium.sh")
		}
		t.Skip("chromium is not installed; test/tools/install-chromium.sh installs it")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if _, err := chromedp.Run(ctx, chromedp.Location()); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	// Record every Content-Security-Policy violation of every page (the recorder is
	// injected by the DevTools protocol, outside the page's CSP); cspViolations reads them.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
		document.addEventListener("securitypolicyviolation", e => {
			const v = JSON.parse(sessionStorage.getItem("csp-violations") || "[]");
			v.push(location.pathname + ": " + e.violatedDirective + " " + e.blockedURI);
			sessionStorage.setItem("csp-violations", JSON.stringify(v));
		});`}); err != nil {
		t.Fatalf("install the CSP recorder: %v", err)
	}
	return ctx
}

// cspViolations returns the CSP violations recorded on the current origin so far.
func cspViolations(t *testing.T, ctx context.Context) string {
	t.Helper()
	return get(t, ctx, "read CSP violations", chromedp.Evaluate[string](`sessionStorage.getItem("csp-violations") || ""`))
}

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		fail(t, ctx, what, err)
	}
}

// get runs one action that returns a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		fail(t, ctx, what, err)
	}
	return v
}

// stepTimeout bounds each browser step, so a missing element fails fast with a message.
const stepTimeout = 20 * time.Second

func fail(t *testing.T, ctx context.Context, what string, err error) {
	t.Helper()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main") ? document.querySelector("main").innerText : ""`))
	t.Fatalf("%s: %v\n(at %s: %.600s)", what, err, loc, strings.Join(strings.Fields(body), " "))
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	// Read through JavaScript rather than DOM node ids, which a page update can retire.
	run(t, ctx, "wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	return strings.TrimSpace(get(t, ctx, "read "+sel, chromedp.Evaluate[string](`document.querySelector(`+jsString(sel)+`).innerText`)))
}

func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	return get(t, ctx, "count "+sel, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(sel)+`).length`))
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// uiEnv is a server with single sign-on through an in-process Entra-shaped provider.
type uiEnv struct {
	*env
	op *oidctest.Provider
}

func startUI(t *testing.T, mods ...func(*config.Config)) *uiEnv {
	t.Helper()
	addr := freePort(t)
	base := "http://" + addr
	op := oidctest.New(t, base+"/ui/auth/callback")
	e := startWith(t, "", func(c *config.Config) {
		c.Addr, c.Issuer = addr, base
		c.UIOIDCIssuer, c.UIEntraTenant = op.Issuer, op.TenantID
		c.UIOIDCClientID, c.UIOIDCClientSecret = op.ClientID, op.ClientSecret
		c.UIRoleMap = "lanyard-admins=admin,finance-platform=operator:finance,Lanyard.Viewer=viewer"
		for _, m := range mods {
			m(c)
		}
	})
	return &uiEnv{env: e, op: op}
}

var (
	ada   = oidctest.User{ObjectID: "0f1e2d3c-0000-4000-8000-00000000ada0", Name: "Ada Admin", Username: "ada@contoso.example", Groups: []string{"lanyard-admins", "all-staff"}}
	vic   = oidctest.User{ObjectID: "0f1e2d3c-0000-4000-8000-000000000v1c", Name: "Vic Viewer", Username: "vic@contoso.example", Roles: []string{"Lanyard.Viewer"}}
	finn  = oidctest.User{ObjectID: "0f1e2d3c-0000-4000-8000-00000000f1nn", Name: "Finn Operator", Username: "finn@contoso.example", Groups: []string{"finance-platform"}}
	nobby = oidctest.User{ObjectID: "0f1e2d3c-0000-4000-8000-0000000n0bby", Name: "Nobby", Username: "nobby@contoso.example", Groups: []string{"all-staff"}}
)

// signIn signs u in through single sign-on, starting from path, and waits for sel.
func (u *uiEnv) signIn(t *testing.T, ctx context.Context, user oidctest.User, path, sel string) {
	t.Helper()
	u.op.SetUser(user)
	run(t, ctx, "sign in as "+user.Username,
		chromedp.Navigate(u.base+path),
		chromedp.WaitVisible(chromedp.CSS("#sso")),
		chromedp.Click(chromedp.CSS("#sso")),
		chromedp.WaitVisible(chromedp.CSS(sel)),
	)
}

func (u *uiEnv) signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, "sign out",
		chromedp.Navigate(u.base+"/ui/agents"),
		chromedp.WaitVisible(chromedp.CSS(".who button")),
		chromedp.Click(chromedp.CSS(".who button")),
		chromedp.WaitVisible(chromedp.CSS("#sso")),
	)
}

func (u *uiEnv) agentStatus(t *testing.T, id string) string {
	t.Helper()
	r := u.api(http.MethodGet, "/v1/agents/"+id, nil)
	if r.status != http.StatusOK {
		t.Fatalf("get agent: %d %s", r.status, r.body)
	}
	return r.json(t)["status"].(string)
}

func (u *uiEnv) secretToken(id, secret string) response {
	return u.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"invoices:read"}}, id, secret)
}

// TestUIInBrowser walks the web UI in headless Chromium: single sign-on with
// Entra-shaped claims, registration with a secret shown once, the fleet list and its
// live search, the agent page, suspension with a reason (and the token refused
// afterwards), CSRF refusal, a viewer who cannot suspend even by forging the request,
// a namespace-scoped operator, and refused sign-ins.
func TestUIInBrowser(t *testing.T) {
	ctx := newBrowser(t)
	u := startUI(t)

	// An admin opens a deep link, signs in with single sign-on and lands there.
	u.signIn(t, ctx, ada, "/ui/agents/new", "#register-form")
	if got := text(t, ctx, ".who .name"); got != ada.Username {
		t.Errorf("signed in as %q, want %q", got, ada.Username)
	}

	run(t, ctx, "settings", chromedp.Navigate(u.base+"/ui/settings"), chromedp.WaitVisible(chromedp.CSS("#h-map")))
	if got := text(t, ctx, "main"); !strings.Contains(got, "finance-platform") || !strings.Contains(got, u.op.Issuer) {
		t.Error("the settings page lacks the role mapping or the provider")
	}
	run(t, ctx, "back to registration", chromedp.Navigate(u.base+"/ui/agents/new"), chromedp.WaitVisible(chromedp.CSS("#register-form")))

	// Registration: a client-secret agent with pasted measurements.
	measured := `{"model_digest":"` + modelDigest + `","prompt_digest":"` + promptDigest + `","tool_manifest_digest":"` + toolsDigest + `"}`
	run(t, ctx, "fill the registration form",
		chromedp.SendKeys(chromedp.CSS("#name"), "invoice-triage"),
		chromedp.SendKeys(chromedp.CSS("#namespace"), "finance"),
		chromedp.SendKeys(chromedp.CSS("#owner"), "ap-platform"),
		chromedp.SendKeys(chromedp.CSS("#purpose"), "Triage inbound invoices"),
		chromedp.Click(chromedp.CSS(`input[name="credential"][value="client_secret"]`)),
		chromedp.SetValue(chromedp.CSS("#measurements"), measured),
		chromedp.SendKeys(chromedp.CSS("#scopes"), "invoices:read erp:post"),
		chromedp.SendKeys(chromedp.CSS("#resources"), "https://erp.example.com"),
	)
	screenshot(t, ctx, "register.png")
	run(t, ctx, "register",
		chromedp.Click(chromedp.CSS("#register-submit")),
		chromedp.WaitVisible(chromedp.CSS("#secret-value")),
	)
	secret := get(t, ctx, "read the secret", chromedp.Evaluate[string](`document.querySelector("#secret-value").value`))
	id := text(t, ctx, "#client-id")
	if !strings.HasPrefix(secret, "lys_") || !strings.HasPrefix(id, "agt_") {
		t.Fatalf("registration showed secret %q for %q", secret, id)
	}
	if n := count(t, ctx, ".alert.warn"); n != 1 {
		t.Errorf("the secret must come with its shown-once warning")
	}

	// The fleet list shows it; the live search (htmx under the strict CSP) narrows it.
	run(t, ctx, "fleet list",
		chromedp.Navigate(u.base+"/ui/agents"),
		chromedp.WaitVisible(chromedp.CSS("#fleet")),
	)
	if !strings.Contains(text(t, ctx, "#fleet"), "invoice-triage") {
		t.Fatal("the new agent is not in the fleet list")
	}
	run(t, ctx, "search with no match",
		chromedp.SendKeys(chromedp.CSS("#q"), "no-such-agent"),
		chromedp.WaitVisible(chromedp.CSS("#fleet-results p.empty")),
	)
	run(t, ctx, "search again",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#q").value = ""`),
		chromedp.SendKeys(chromedp.CSS("#q"), "INVOICE"),
		chromedp.WaitVisible(chromedp.CSS(`#fleet a[href="/ui/agents/`+id+`"]`)),
	)
	loc := get(t, ctx, "location", chromedp.Location())
	if !strings.Contains(loc, "q=INVOICE") {
		t.Errorf("the search is not in the address bar: %s", loc)
	}

	// The agent page.
	run(t, ctx, "open the agent page",
		chromedp.Click(chromedp.CSS(`#fleet a[href="/ui/agents/`+id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#h-identity")),
	)
	if !strings.Contains(text(t, ctx, "h1"), "invoice-triage") || !strings.Contains(text(t, ctx, "main"), modelDigest) {
		t.Error("the agent page lacks the name or the reference measurements")
	}
	// The secret authenticates; the grant then wants an attestation (the pasted
	// measurements made it required).
	wantOAuthError(t, u.secretToken(id, secret), http.StatusBadRequest, "invalid_grant", "attestation")

	// Suspend with a reason; the agent's token request is refused afterwards.
	run(t, ctx, "suspend",
		chromedp.Click(chromedp.CSS("#action-suspend")),
		chromedp.WaitVisible(chromedp.CSS("#reason")),
		chromedp.SendKeys(chromedp.CSS("#reason"), "INC-4711: leaked logs"),
		chromedp.Click(chromedp.CSS("#confirm-submit")),
		chromedp.WaitVisible(chromedp.CSS("h1 .status-suspended")),
	)
	if got := u.agentStatus(t, id); got != "suspended" {
		t.Fatalf("status after suspending in the UI = %s", got)
	}
	wantOAuthError(t, u.secretToken(id, secret), http.StatusUnauthorized, "invalid_client", "agent is suspended")
	u.eventually(t, func() bool {
		for _, ev := range u.auditEvents(t, "agent_id="+id) {
			if ev.Type == "agent.suspended" && ev.Reason == "INC-4711: leaked logs" && ev.Actor == "user:"+ada.Username {
				return true
			}
		}
		return false
	}, "the suspension with its reason and actor is not in the audit log")

	// A form submitted without the CSRF token is refused and changes nothing.
	run(t, ctx, "resume without the CSRF token",
		chromedp.Navigate(u.base+"/ui/agents/"+id+"/resume"),
		chromedp.WaitVisible(chromedp.CSS("#confirm-form")),
	)
	get(t, ctx, "remove the CSRF token", chromedp.Evaluate[bool](`document.querySelector('#confirm-form input[name="csrf_token"]').remove(), true`))
	run(t, ctx, "submit without the CSRF token",
		chromedp.SendKeys(chromedp.CSS("#reason"), "forged"),
		chromedp.Click(chromedp.CSS("#confirm-submit")),
		chromedp.WaitVisible(chromedp.CSS("#error-page")),
	)
	if got := text(t, ctx, "main h1"); got != "Request refused" {
		t.Errorf("without a CSRF token the page says %q", got)
	}
	if got := u.agentStatus(t, id); got != "suspended" {
		t.Fatalf("a request without the CSRF token changed the status to %s", got)
	}

	// A viewer sees the agent but no actions, is refused the confirmation page, and is
	// refused by the server even when forging the POST with a valid CSRF token.
	u.signOut(t, ctx)
	u.signIn(t, ctx, vic, "/ui/agents/"+id, "#h-identity")
	if n := count(t, ctx, "ul.actions a"); n != 0 {
		t.Errorf("a viewer is offered %d actions", n)
	}
	run(t, ctx, "viewer opens the resume page",
		chromedp.Navigate(u.base+"/ui/agents/"+id+"/resume"),
		chromedp.WaitVisible(chromedp.CSS("#error-page")),
	)
	if got := text(t, ctx, "main h1"); got != "Not allowed" {
		t.Errorf("viewer on the resume page sees %q", got)
	}
	status := get(t, ctx, "viewer forges a resume",
		chromedp.Evaluate[int](`(async () => {
			const f = new FormData();
			f.set("csrf_token", document.querySelector('.who input[name="csrf_token"]').value);
			f.set("reason", "forged by a viewer");
			const r = await fetch("/ui/agents/`+id+`/resume", {method: "POST", body: f});
			return r.status;
		})()`, chromedp.EvalAwaitPromise))
	if status != http.StatusForbidden {
		t.Errorf("a viewer's forged resume got %d, want 403", status)
	}
	if got := u.agentStatus(t, id); got != "suspended" {
		t.Fatalf("a viewer changed the status to %s", got)
	}

	// An operator scoped to finance may resume (not revoke) this finance agent.
	u.signOut(t, ctx)
	u.signIn(t, ctx, finn, "/ui/agents/"+id, "#h-identity")
	if count(t, ctx, "#action-resume") != 1 || count(t, ctx, "#action-revoke") != 0 {
		t.Error("a finance operator must be offered resume and not revoke")
	}
	run(t, ctx, "operator resumes",
		chromedp.Click(chromedp.CSS("#action-resume")),
		chromedp.WaitVisible(chromedp.CSS("#reason")),
		chromedp.SendKeys(chromedp.CSS("#reason"), "INC-4711 closed"),
		chromedp.Click(chromedp.CSS("#confirm-submit")),
		chromedp.WaitVisible(chromedp.CSS("h1 .status-active")),
	)
	run(t, ctx, "operator opens the dashboard",
		chromedp.Navigate(u.base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#dashboard")),
	)
	if !strings.Contains(text(t, ctx, "main"), "fleet-wide dashboard needs a role in every namespace") {
		t.Error("a scoped operator must not see fleet-wide figures")
	}

	// Every page so far ran under the strict CSP without a single violation (htmx
	// included).
	if v := cspViolations(t, ctx); v != "" {
		t.Errorf("Content-Security-Policy violations: %s", v)
	}

	// Refused sign-ins: no mapped role; another tenant.
	u.signOut(t, ctx)
	u.signIn(t, ctx, nobby, "/ui/", ".alert.error")
	if got := text(t, ctx, ".alert.error"); !strings.Contains(got, "none of your groups or app roles is mapped") {
		t.Errorf("unmapped user sees %q", got)
	}
	other := ada
	other.TenantID = "11111111-2222-3333-4444-555555555555"
	u.signIn(t, ctx, other, "/ui/", ".alert.error")
	if got := text(t, ctx, ".alert.error"); !strings.Contains(got, "another Microsoft Entra tenant") {
		t.Errorf("user of another tenant sees %q", got)
	}
}

// screenshot saves a full-page PNG to $LANYARD_UI_SCREENSHOTS (docs/images when
// regenerating the README's pictures), else to the test's temp dir.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("LANYARD_UI_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	// Let two frames paint after the last input, so the picture shows the settled page.
	get(t, ctx, "settle", chromedp.Evaluate[bool](`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`, chromedp.EvalAwaitPromise))
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUIDashboardAndAgentPage fills a small fleet through the API (registrations,
// attestations affirming and contraindicated, tokens issued and refused, suspensions)
// and checks that the dashboard and the agent page show it: the plots, the refusals
// with their reasons, each attestation check's expected and actual values. It saves
// the screenshots the README shows.
func TestUIDashboardAndAgentPage(t *testing.T) {
	ctx := newBrowser(t)
	u := startUI(t, func(c *config.Config) {
		c.Rotation.AgentCredentialEvery = 720 * time.Hour
		c.Rotation.CheckInterval = time.Second // the scheduler republishes compliance each check
	})

	ref := map[string]any{"model_digest": modelDigest, "prompt_digest": promptDigest, "tool_manifest_digest": toolsDigest}
	good := map[string]string{"model_digest": modelDigest, "prompt_digest": promptDigest, "tool_manifest_digest": toolsDigest}
	poisoned := map[string]string{"model_digest": modelDigest, "prompt_digest": promptDigest, "tool_manifest_digest": "sha256:" + strings.Repeat("9f", 32)}
	star := u.registerJWT(t, "support-summariser", map[string]any{"namespace": "support", "owner": "cx-platform",
		"purpose": "Summarise support tickets for the on-call engineer", "risk_level": "high", "reference": ref, "attestation_ttl": "30m"})
	for i, spec := range []struct{ name, ns, risk string }{
		{"invoice-triage", "finance", "medium"}, {"payment-reconciler", "finance", "critical"}, {"expense-checker", "finance", "low"},
		{"onboarding-assistant", "hr", "medium"}, {"policy-answerer", "hr", "low"}, {"ticket-router", "support", "low"},
		{"deploy-reviewer", "platform", "high"}, {"cost-reporter", "platform", "low"},
	} {
		a := u.registerJWT(t, spec.name, map[string]any{"namespace": spec.ns, "risk_level": spec.risk})
		for range i % 3 {
			if r := u.tokenJWT(t, a, nil); r.status != http.StatusOK {
				t.Fatalf("token: %d %s", r.status, r.body)
			}
		}
		switch i {
		case 2:
			u.api(http.MethodPost, "/v1/agents/"+a.id+"/suspend", map[string]string{"reason": "owner on leave"})
		case 5:
			u.api(http.MethodPost, "/v1/agents/"+a.id+"/revoke", map[string]string{"reason": "replaced by ticket-router-v2"})
		}
	}
	// A poisoned tool manifest is contraindicated and its token refused; then the
	// agent attests cleanly and gets tokens.
	if v := u.attest(t, u.attestBody(t, star, u.challenge(t, star), poisoned)); v.Status != "contraindicated" {
		t.Fatalf("poisoned manifest: %s", v.Status)
	}
	wantOAuthError(t, u.tokenJWT(t, star, nil), http.StatusBadRequest, "invalid_grant", "attestation failed")
	if v := u.attest(t, u.attestBody(t, star, u.challenge(t, star), good)); v.Status != "affirming" {
		t.Fatalf("clean attestation: %s", v.Status)
	}
	for range 3 {
		if r := u.tokenJWT(t, star, url.Values{"scope": {"invoices:read"}}); r.status != http.StatusOK {
			t.Fatalf("attested token: %d %s", r.status, r.body)
		}
	}
	u.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "agt_unknown", "guess")
	u.eventually(t, func() bool { return len(u.auditEvents(t, "type=token.refused")) >= 2 }, "refusals not in the audit log")

	u.signIn(t, ctx, ada, "/ui/", "#dashboard")
	u.eventually(t, func() bool {
		run(t, ctx, "reload the dashboard", chromedp.Navigate(u.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#dashboard")))
		return strings.Contains(text(t, ctx, "main"), "scheduled credentials inside their rotation policy")
	}, "the dashboard never showed the scheduler's compliance")
	if n := count(t, ctx, "svg.chart rect.issued"); n != 12 {
		t.Errorf("the token plot has %d columns, want 12", n)
	}
	main := strings.Join(strings.Fields(text(t, ctx, "main")), " ")
	for _, want := range []string{"9 agents registered", "attestation failed", "agt_unknown?", "tokens issued, last hour",
		"100% rotation compliance", "scheduled credentials inside their rotation policy"} {
		if !strings.Contains(main, want) {
			t.Errorf("the dashboard lacks %q", want)
		}
	}
	screenshot(t, ctx, "dashboard.png")

	run(t, ctx, "open the attested agent",
		chromedp.Navigate(u.base+"/ui/agents/"+star.id),
		chromedp.WaitVisible(chromedp.CSS("#h-att")),
	)
	if got := text(t, ctx, "#h-creds + div, #h-creds ~ dl"); !strings.Contains(got, "every 720h0m0s") {
		t.Errorf("the rotation schedule is not on the agent page: %q", got)
	}
	if n := count(t, ctx, "details.attestation"); n != 2 {
		t.Errorf("%d attestations shown, want 2", n)
	}
	failed := get(t, ctx, "the failed check", chromedp.Evaluate[string](`(() => {
		const tr = document.querySelector("tr.check-fail");
		return tr ? tr.textContent : "";
	})()`))
	if !strings.Contains(failed, "measurements.tools") || !strings.Contains(failed, toolsDigest) || !strings.Contains(failed, strings.Repeat("9f", 32)) {
		t.Errorf("the failed check must show expected and actual digests: %q", failed)
	}
	if n := count(t, ctx, "#h-issued + table tbody tr"); n != 3 {
		t.Errorf("%d issued tokens shown, want 3", n)
	}
	screenshot(t, ctx, "agent.png")
	if v := cspViolations(t, ctx); v != "" {
		t.Errorf("Content-Security-Policy violations: %s", v)
	}
}

// TestUIWithoutJavaScript: with scripts disabled the UI still works (break-glass
// sign-in, search, an action), and on a phone-sized screen no page scrolls sideways.
func TestUIWithoutJavaScript(t *testing.T) {
	ctx := newBrowser(t)
	u := startUI(t)
	a := u.registerSecret(t, "mobile-agent")
	other := u.registerJWT(t, "other-agent", map[string]any{"namespace": "ops"})

	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "break-glass sign-in without JavaScript",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Navigate(u.base+"/ui/agents"),
		chromedp.WaitVisible(chromedp.CSS(".breakglass summary")),
		chromedp.Click(chromedp.CSS(".breakglass summary")),
		chromedp.SendKeys(chromedp.CSS("#token"), u.admin),
		chromedp.Click(chromedp.CSS("#token-submit")),
		chromedp.WaitVisible(chromedp.CSS("#fleet")),
	)
	if got := text(t, ctx, ".who .name"); got != "admin" {
		t.Errorf("signed in as %q", got)
	}
	if n := count(t, ctx, "#fleet tbody tr"); n != 2 {
		t.Errorf("%d agents listed, want 2", n)
	}
	run(t, ctx, "search by submitting the form",
		chromedp.SendKeys(chromedp.CSS("#q"), "mobile"),
		chromedp.Click(chromedp.CSS(".filters button")),
		// The matching row is on the page before the submitted form's answer arrives
		// too: wait for the other agent's row to go.
		chromedp.WaitNotPresent(chromedp.CSS(`#fleet a[href="/ui/agents/`+other.id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#fleet a[href="/ui/agents/`+a.id+`"]`)),
	)
	if n := count(t, ctx, "#fleet tbody tr"); n != 1 {
		t.Errorf("%d agents after the search, want 1", n)
	}
	noSideways := func(page string) {
		t.Helper()
		over := get(t, ctx, "measure "+page, chromedp.Evaluate[int](`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
		if over > 0 {
			t.Errorf("%s scrolls sideways by %dpx on a phone", page, over)
		}
	}
	noSideways("the fleet list")
	run(t, ctx, "suspend without JavaScript",
		chromedp.Click(chromedp.CSS(`#fleet a[href="/ui/agents/`+a.id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#action-suspend")),
	)
	noSideways("the agent page")
	run(t, ctx, "confirm",
		chromedp.Click(chromedp.CSS("#action-suspend")),
		chromedp.WaitVisible(chromedp.CSS("#reason")),
		chromedp.SendKeys(chromedp.CSS("#reason"), "lost phone"),
		chromedp.Click(chromedp.CSS("#confirm-submit")),
		chromedp.WaitVisible(chromedp.CSS("h1 .status-suspended")),
	)
	// Register with a key pair Lanyard generates: the private key shown once signs the
	// agent's client assertions; rotating it from the UI shows the next key once.
	run(t, ctx, "register with a generated key",
		chromedp.Navigate(u.base+"/ui/agents/new"),
		chromedp.WaitVisible(chromedp.CSS("#register-form")),
		chromedp.SendKeys(chromedp.CSS("#name"), "keyed-agent"),
		chromedp.SendKeys(chromedp.CSS("#namespace"), "finance"),
		chromedp.SendKeys(chromedp.CSS("#owner"), "ap-platform"),
		chromedp.SendKeys(chromedp.CSS("#scopes"), "invoices:read"),
		chromedp.Click(chromedp.CSS(`input[name="credential"][value="generate"]`)),
		chromedp.Click(chromedp.CSS("#register-submit")),
		chromedp.WaitVisible(chromedp.CSS("#private-key")),
	)
	keyed := registered{id: text(t, ctx, "#client-id"), key: pemKey(t, get(t, ctx, "read the key", chromedp.Evaluate[string](`document.querySelector("#private-key").value`)))}
	if r := u.tokenJWT(t, keyed, nil); r.status != http.StatusOK {
		t.Fatalf("token with the generated key: %d %s", r.status, r.body)
	}
	run(t, ctx, "rotate the generated key",
		chromedp.Click(chromedp.CSS("#open-agent")),
		chromedp.WaitVisible(chromedp.CSS("#action-rotate")),
		chromedp.Click(chromedp.CSS("#action-rotate")),
		chromedp.WaitVisible(chromedp.CSS("#reason")),
		chromedp.SendKeys(chromedp.CSS("#reason"), "quarterly rotation"),
		chromedp.SendKeys(chromedp.CSS("#grace"), "1h"),
		chromedp.Click(chromedp.CSS("#confirm-submit")),
		chromedp.WaitVisible(chromedp.CSS("#private-key")),
	)
	next := registered{id: keyed.id, key: pemKey(t, get(t, ctx, "read the new key", chromedp.Evaluate[string](`document.querySelector("#private-key").value`)))}
	if next.key.priv.KeyID == keyed.key.priv.KeyID {
		t.Fatal("the rotation showed the old key")
	}
	for name, k := range map[string]registered{"new key": next, "old key in its grace period": keyed} {
		if r := u.tokenJWT(t, k, nil); r.status != http.StatusOK {
			t.Errorf("token with the %s: %d %s", name, r.status, r.body)
		}
	}

	for _, page := range []string{"/ui/", "/ui/agents/new", "/ui/audit"} {
		run(t, ctx, "open "+page, chromedp.Navigate(u.base+page), chromedp.WaitVisible(chromedp.CSS("main h1")))
		noSideways(page)
	}
	if got := text(t, ctx, "#chain-status"); !strings.Contains(got, "Chain verified") {
		t.Errorf("the audit log's chain status says %q", got)
	}
	if !strings.Contains(text(t, ctx, "main table"), "lost phone") {
		t.Error("the suspension's reason is not in the audit log page")
	}
}

// pemKey reads a PKCS #8 PEM private key as the agent's signing key; the kid is the
// RFC 7638 thumbprint, as Lanyard sets it on keys it generates.
func pemKey(t *testing.T, s string) agentKey {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		t.Fatalf("not a PEM key: %q", s)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: k, Algorithm: "ES256", Use: "sig"}
	tp, err := jwk.Thumbprint(cryptoSHA256)
	if err != nil {
		t.Fatal(err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return agentKey{priv: jwk, pub: jwk.Public(), alg: jose.ES256}
}
