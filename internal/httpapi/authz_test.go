package httpapi

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

type discardAudit struct{}

func (discardAudit) Record(context.Context, audit.Event) error { return nil }

// TestV1RolesEnforced: /v1 asks authz like the UI does, so a principal with a scoped
// role gets 403 problems outside its namespace and does not see other namespaces.
func TestV1RolesEnforced(t *testing.T) {
	st := storetest.OpenSQLite(t)
	hasher, err := lifecycle.NewSecretHasher(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	svc := lifecycle.New(st, discardAudit{}, hasher, lifecycle.Options{})
	for _, ns := range []string{"finance", "hr"} {
		if _, err := svc.Register(t.Context(), "test", lifecycle.RegisterRequest{Name: "a", Namespace: ns, Owner: "o",
			Credential: &lifecycle.CredentialRequest{Type: "client_secret"}}); err != nil {
			t.Fatal(err)
		}
	}
	list, _, _ := svc.List(t.Context(), store.AgentFilter{})
	ids := map[string]string{}
	for _, a := range list {
		ids[a.Namespace] = a.ID
	}

	principal := &authz.Principal{Name: "finn", Grants: []authz.Grant{{Role: authz.Operator, Namespaces: []string{"finance"}}}}
	e := echo.New()
	e.HTTPErrorHandler = errorHandler(slog.New(slog.DiscardHandler))
	g := e.Group("/v1", func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.SetRequest(c.Request().WithContext(authz.WithPrincipal(c.Request().Context(), principal)))
			c.Set("actor", principal.Actor())
			return next(c)
		}
	})
	(&agentsHandler{svc: svc}).Mount(g)
	(&auditHandler{st: st}).Mount(g)

	tests := []struct {
		name, method, path, body string
		want                     int
		contains                 string
	}{
		{"suspend in own namespace", "POST", "/v1/agents/" + ids["finance"] + "/suspend", `{"reason":"r"}`, 200, `"suspended"`},
		{"revoke needs admin", "POST", "/v1/agents/" + ids["finance"] + "/revoke", "", 403, "may not revoke agents"},
		{"other namespace is hidden", "POST", "/v1/agents/" + ids["hr"] + "/suspend", "", 404, "not found"},
		{"get other namespace", "GET", "/v1/agents/" + ids["hr"], "", 404, "not found"},
		{"list shows own namespace only", "GET", "/v1/agents", "", 200, `"namespace":"finance"`},
		{"list other namespace", "GET", "/v1/agents?namespace=hr", "", 403, "may not view agents"},
		{"register needs admin", "POST", "/v1/agents", `{"name":"b","namespace":"finance","owner":"o","credential":{"type":"client_secret"}}`, 403, "may not register"},
		{"audit needs an unscoped role", "GET", "/v1/audit", "", 403, "every namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tt.want || !strings.Contains(rec.Body.String(), tt.contains) {
				t.Errorf("%s %s = %d %s; want %d containing %q", tt.method, tt.path, rec.Code, rec.Body, tt.want, tt.contains)
			}
			if tt.name == "list shows own namespace only" && strings.Contains(rec.Body.String(), `"namespace":"hr"`) {
				t.Error("the list leaks another namespace")
			}
		})
	}
}

// TestV1RoutesOutsideAgentsEnforced: issuers, rotation, signing keys and TPM enrolment
// ask authz too; a namespace-scoped operator reaches none of them, and nothing runs.
func TestV1RoutesOutsideAgentsEnforced(t *testing.T) {
	principal := &authz.Principal{Name: "finn", Grants: []authz.Grant{{Role: authz.Operator, Namespaces: []string{"finance"}}}}
	e := echo.New()
	e.HTTPErrorHandler = errorHandler(slog.New(slog.DiscardHandler))
	g := e.Group("/v1", func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.SetRequest(c.Request().WithContext(authz.WithPrincipal(c.Request().Context(), principal)))
			return next(c)
		}
	})
	// Nil services: a request that got past the check would panic, not pass.
	(&federationHandler{}).Mount(g)
	(&rotationHandler{}).Mount(g)
	(&tpmHandler{}).Mount(g)
	for _, r := range []struct{ method, path, perm string }{
		{"GET", "/v1/federation/issuers", "view agents"},
		{"POST", "/v1/federation/issuers", "manage settings"},
		{"DELETE", "/v1/federation/issuers?issuer=x", "manage settings"},
		{"GET", "/v1/agents/agt_1/federation", "view agents"},
		{"POST", "/v1/agents/agt_1/federation/credentials", "update agents"},
		{"DELETE", "/v1/agents/agt_1/federation/credentials/crd_1", "update agents"},
		{"GET", "/v1/rotation", "view agents"},
		{"PUT", "/v1/agents/agt_1/rotation", "update agents"},
		{"POST", "/v1/signing-keys/rotate", "manage settings"},
		{"POST", "/v1/tpm/enrolments", "register agents"},
		{"POST", "/v1/tpm/enrolments/enr_1/activation", "register agents"},
		{"GET", "/v1/tpm/attestation-keys/000b00", "view agents"},
	} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(r.method, r.path, strings.NewReader("{}")))
		if rec.Code != 403 || !strings.Contains(rec.Body.String(), r.perm) {
			t.Errorf("%s %s = %d %s; want 403 naming %q", r.method, r.path, rec.Code, rec.Body, r.perm)
		}
	}
}
