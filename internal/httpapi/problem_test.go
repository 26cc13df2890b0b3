package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

func TestToProblem(t *testing.T) {
	const internal = "pq: password authentication failed for user lanyard at 10.0.0.5"
	fields := []lifecycle.FieldError{{Field: "name", Detail: "is required"}, {Field: "owner", Detail: "is required"}}
	tests := []struct {
		name       string
		err        error
		status     int
		typ        string
		detail     string // substring of Detail
		wantFields []lifecycle.FieldError
	}{
		{"validation", &lifecycle.ValidationError{Fields: fields}, 400, "validation", "invalid fields", fields},
		{"wrapped validation", fmt.Errorf("register: %w", &lifecycle.ValidationError{Fields: fields}), 400, "validation", "invalid fields", fields},
		{"transition", &lifecycle.TransitionError{Action: "resume", From: "revoked"}, 409, "invalid-transition", "cannot resume an agent that is revoked", nil},
		{"conflict", &lifecycle.ConflictError{Detail: `an agent named "a" already exists in namespace "p"`, Err: store.ErrConflict},
			409, "conflict", `an agent named "a" already exists`, nil},
		{"not found", fmt.Errorf("lifecycle: agent %q: %w", "agt_x", fmt.Errorf("gormstore: get agent: %w", store.ErrNotFound)), 404, "not-found", "no such resource", nil},
		{"body too large", fmt.Errorf("read body: %w", &http.MaxBytesError{Limit: 65536}), 413, "body-too-large", "65536 bytes", nil},
		{"problem passes through", newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", "send JSON"), 415, "unsupported-media-type", "send JSON", nil},
		{"echo 404", echo.NewHTTPError(http.StatusNotFound, "Not Found"), 404, "not-found", "no such endpoint", nil},
		{"echo 405", echo.NewHTTPError(http.StatusMethodNotAllowed), 405, "method-not-allowed", "method not allowed", nil},
		{"unknown", errors.New(internal), 500, "internal", "request id", nil},
		{"wrapped unknown", fmt.Errorf("lifecycle: register: %w", errors.New(internal)), 500, "internal", "request id", nil},
		// A bare store conflict is not a ConflictError: it must not leak as one.
		{"store conflict", fmt.Errorf("%s: %w", internal, store.ErrConflict), 500, "internal", "request id", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := toProblem(tt.err)
			if p.Status != tt.status || p.Type != "urn:lanyard:problem:"+tt.typ || p.Title != http.StatusText(tt.status) {
				t.Errorf("problem %d %s %q, want %d urn:lanyard:problem:%s %q", p.Status, p.Type, p.Title, tt.status, tt.typ, http.StatusText(tt.status))
			}
			if !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail %q, want it to contain %q", p.Detail, tt.detail)
			}
			if fmt.Sprint(p.Errors) != fmt.Sprint(tt.wantFields) {
				t.Errorf("errors %v, want %v", p.Errors, tt.wantFields)
			}
			// What the client receives never carries the internal error text.
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "password") || strings.Contains(string(b), "10.0.0.5") {
				t.Errorf("problem document leaks internal text: %s", b)
			}
			// The logs do get it.
			if tt.status == 500 && !errors.Is(p, tt.err) {
				t.Errorf("the 500 problem does not wrap its cause for the logs")
			}
		})
	}
}

func TestErrorHandler(t *testing.T) {
	const internal = "dial tcp 10.0.0.5:5432: connection refused"
	tests := []struct {
		name     string
		err      error
		status   int
		wantAuth bool
		logged   bool
	}{
		{"internal", errors.New(internal), 500, false, true},
		{"unauthenticated", newProblem(http.StatusUnauthorized, "unauthenticated", "send the admin token"), 401, true, false},
		{"validation", &lifecycle.ValidationError{Fields: []lifecycle.FieldError{{Field: "name", Detail: "is required"}}}, 400, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := errorHandler(slog.New(slog.NewTextHandler(&logs, nil)))
			e := echo.New()
			req := httptest.NewRequest(http.MethodPost, "/v1/agents", nil)
			rec := httptest.NewRecorder()
			h(tt.err, e.NewContext(req, rec))

			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			if got := rec.Header().Get("WWW-Authenticate") != ""; got != tt.wantAuth {
				t.Errorf("WWW-Authenticate %q; want it set: %v", rec.Header().Get("WWW-Authenticate"), tt.wantAuth)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if p.Status != tt.status || p.Instance != "/v1/agents" {
				t.Errorf("problem status %d instance %q; want %d /v1/agents", p.Status, p.Instance, tt.status)
			}
			if strings.Contains(rec.Body.String(), "10.0.0.5") {
				t.Errorf("response leaks the internal error: %s", rec.Body)
			}
			if got := strings.Contains(logs.String(), "10.0.0.5"); got != tt.logged {
				t.Errorf("internal error logged: %v, want %v; logs: %s", got, tt.logged, logs.String())
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		typ   string // problem type slug; "" when the body decodes
		field string // the one field a validation problem names
		bug   string
	}{
		{name: "valid", body: `{"name":"a","namespace":"p","credential":{"type":"client_secret"}}`},
		{name: "valid with whitespace", body: " \n{\"name\":\"a\"}\n\t "},
		{name: "null", body: `null`},
		{name: "unknown field", body: `{"name":"a","nmae":"b"}`, typ: "validation", field: "nmae"},
		{name: "unknown nested field", body: `{"credential":{"type":"client_secret","secret":"x"}}`, typ: "validation", field: "secret"},
		{name: "wrong type string", body: `{"name":42}`, typ: "validation", field: "name"},
		{name: "wrong type bool", body: `{"pending":"yes"}`, typ: "validation", field: "pending"},
		{name: "wrong type list", body: `{"allowed_scopes":"a b"}`, typ: "validation", field: "allowed_scopes"},
		{name: "wrong type nested", body: `{"credential":{"type":["x"]}}`, typ: "validation", field: "credential.type"},
		{name: "root not an object", body: `["name"]`, typ: "validation", field: "(root)"},
		{name: "syntax error", body: `{"name":}`, typ: "malformed-json"},
		{name: "truncated", body: `{"name":"a"`, typ: "malformed-json"},
		{name: "empty", body: ``, typ: "malformed-json"},
		{name: "trailing object", body: `{"name":"a"}{"name":"b"}`, typ: "malformed-json"},
		{name: "trailing garbage", body: `{"name":"a"} x`, typ: "malformed-json"},
		{name: "trailing bracket", body: `{"name":"a"}]`, typ: "malformed-json",
			bug: "problem.go decodeJSON: dec.More() is false before ']' and '}', so a body followed by ] or } is accepted"},
		{name: "trailing brace", body: `{"name":"a"}}`, typ: "malformed-json",
			bug: "problem.go decodeJSON: dec.More() is false before ']' and '}', so a body followed by ] or } is accepted"},
		{name: "second object after a bracket", body: `{"name":"a"}] {"name":"b","is_admin":true}`, typ: "malformed-json",
			bug: "problem.go decodeJSON: dec.More() is false before ']' and '}', so anything after ] or } is ignored"},
		{name: "deep nesting", body: strings.Repeat(`{"reference":`, 20000) + "{}" + strings.Repeat("}", 20000), typ: "malformed-json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req lifecycle.RegisterRequest
			err := decodeJSON([]byte(tt.body), &req)
			if tt.typ == "" {
				if err != nil {
					t.Fatalf("decodeJSON = %v, want nil", err)
				}
				return
			}
			if err == nil && tt.bug != "" {
				t.Fatal("regression of a fixed bug: " + tt.bug)
			}
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("decodeJSON = %v (%T), want a *Problem", err, err)
			}
			if p.Status != 400 || p.Type != "urn:lanyard:problem:"+tt.typ {
				t.Errorf("problem %d %s (%s), want 400 %s", p.Status, p.Type, p.Detail, tt.typ)
			}
			if tt.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.field) {
				t.Errorf("errors %v, want exactly field %s", p.Errors, tt.field)
			}
		})
	}
}

func TestAuthzProblems(t *testing.T) {
	p := toProblem(&authz.DeniedError{Principal: "vic", Permission: authz.SuspendAgents, Namespace: "finance"})
	if p.Status != 403 || p.Detail != `vic may not suspend and resume agents in namespace "finance"` {
		t.Errorf("denied: %+v", p)
	}
	if p := toProblem(authz.UnauthenticatedError{}); p.Status != 401 {
		t.Errorf("unauthenticated: %+v", p)
	}
}
