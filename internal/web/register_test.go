package web

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/store"
)

// post sends a multipart form (as the registration page does), with an optional file.
func (f *fixture) post(t *testing.T, path string, sc *http.Cookie, fields map[string]string, fileField, fileBody string) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if fileField != "" {
		w, _ := mw.CreateFormFile(fileField, "upload.json")
		_, _ = io.WriteString(w, fileBody)
	}
	_ = mw.Close()
	req := httptest.NewRequest("POST", path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.AddCookie(sc)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

var hiddenJWK = regexp.MustCompile(`(?s)<textarea id="private-jwk"[^>]*>(.*?)</textarea>`)

func TestRegisterForm(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	sc, csrf := f.signIn(t)
	base := map[string]string{"csrf_token": csrf, "namespace": "finance", "owner": "ap", "risk_level": "low", "token_alg": "ES256"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	// A generated key pair: the private JWK is shown once and its public half registered.
	code, body := f.post(t, "/ui/agents", sc, with("name", "gen", "credential", "generate", "key_alg", "ES256"), "", "")
	if code != http.StatusCreated || !strings.Contains(body, "shown exactly once") {
		t.Fatalf("generate: %d", code)
	}
	m := hiddenJWK.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no private key on the page")
	}
	var priv jose.JSONWebKey
	if err := json.Unmarshal([]byte(htmlUnescape(m[1])), &priv); err != nil || priv.IsPublic() || priv.KeyID == "" {
		t.Fatalf("the private JWK does not parse: %v", err)
	}
	list, _, _ := f.h.d.Lifecycle.List(t.Context(), store.AgentFilter{NameContains: "gen"})
	a, _ := f.h.d.Lifecycle.Get(t.Context(), list[0].ID)
	var set jose.JSONWebKeySet
	_ = json.Unmarshal(a.Credentials[0].JWKS, &set)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != priv.KeyID || !set.Keys[0].IsPublic() {
		t.Errorf("registered JWKS %+v does not match the shown key %s", set.Keys, priv.KeyID)
	}

	// An uploaded JWK set and an uploaded measurements file.
	pubSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{priv.Public()}})
	code, body = f.post(t, "/ui/agents", sc, with("name", "uploaded", "credential", "jwks", "jwks", string(pubSet)),
		"measurements_file", `{"model_digest":"sha256:`+strings.Repeat("ab", 32)+`","files":["ignored"]}`)
	if code != http.StatusCreated || strings.Contains(body, "private-jwk") {
		t.Fatalf("jwks upload: %d (a provided key must not show a private key)", code)
	}
	list, _, _ = f.h.d.Lifecycle.List(t.Context(), store.AgentFilter{NameContains: "uploaded"})
	if a, _ := f.h.d.Lifecycle.Get(t.Context(), list[0].ID); a.Reference == nil || a.Reference.ModelDigest != "sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("the uploaded measurements were not registered: %+v", a.Reference)
	}

	// Bad input: every problem shown, values kept, nothing registered.
	code, body = f.post(t, "/ui/agents", sc, with("name", "Bad Name", "credential", "jwks", "jwks", `{"keys":[]}`, "measurements", "{not json", "max_token_ttl", "5 minutes"), "", "")
	if code != http.StatusBadRequest {
		t.Fatalf("bad input: %d", code)
	}
	for _, want := range []string{"Nothing was saved", "<code>reference</code>", `value="Bad Name"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the form with errors lacks %q", want)
		}
	}
	code, body = f.post(t, "/ui/agents", sc, with("name", "badttl", "credential", "client_secret", "max_token_ttl", "5 minutes"), "", "")
	if code != http.StatusBadRequest || !strings.Contains(body, "max_token_ttl") {
		t.Errorf("bad ttl: %d", code)
	}
	code, _ = f.post(t, "/ui/agents", sc, with("name", "gen", "credential", "client_secret"), "", "")
	if code != http.StatusConflict {
		t.Errorf("duplicate name: %d, want 409", code)
	}
	if n, _, _ := f.h.d.Lifecycle.List(t.Context(), store.AgentFilter{}); len(n) != 2 {
		t.Errorf("%d agents registered, want 2", len(n))
	}
}

func TestActionsNeedAReason(t *testing.T) {
	f := newFixture(t, "http://localhost:8080")
	sc, csrf := f.signIn(t)
	code, body := f.post(t, "/ui/agents", sc, map[string]string{"csrf_token": csrf, "name": "s", "namespace": "ops", "owner": "o",
		"credential": "client_secret"}, "", "")
	if code != http.StatusCreated {
		t.Fatalf("register: %d", code)
	}
	id := regexp.MustCompile(`agt_[0-9a-v]{26}`).FindString(body)

	if code, body = f.post(t, "/ui/agents/"+id+"/suspend", sc, map[string]string{"csrf_token": csrf, "reason": "  "}, "", ""); code != http.StatusBadRequest || !strings.Contains(body, "is required") {
		t.Fatalf("suspend without a reason: %d", code)
	}
	if code, _ = f.post(t, "/ui/agents/"+id+"/resume", sc, map[string]string{"csrf_token": csrf, "reason": "x"}, "", ""); code != http.StatusConflict {
		t.Errorf("resume an active agent: %d, want 409", code)
	}
	if code, _ = f.post(t, "/ui/agents/"+id+"/explode", sc, map[string]string{"csrf_token": csrf, "reason": "x"}, "", ""); code != http.StatusNotFound {
		t.Errorf("unknown action: %d, want 404", code)
	}
	if code, _ = f.post(t, "/ui/agents/"+id+"/suspend", sc, map[string]string{"csrf_token": csrf, "reason": "line one\r\nline two"}, "", ""); code != http.StatusSeeOther {
		t.Fatalf("suspend: %d", code)
	}
	a, _ := f.h.d.Lifecycle.Get(t.Context(), id)
	if a.Status != store.StatusSuspended || a.StatusReason != "line one\nline two" {
		t.Errorf("after suspend: %s %q", a.Status, a.StatusReason)
	}
	// Rotating a secret agent shows the new secret once and records the reason.
	code, body = f.post(t, "/ui/agents/"+id+"/rotate", sc, map[string]string{"csrf_token": csrf, "reason": "quarterly", "grace": "1h"}, "", "")
	if code != http.StatusOK || !regexp.MustCompile(`value="lys_[A-Za-z0-9_-]{43}"`).MatchString(body) {
		t.Fatalf("rotate: %d", code)
	}
	var rotated bool
	for _, e := range f.aud.events {
		rotated = rotated || (e.Type == "credential.rotated" && e.Reason == "quarterly")
	}
	if !rotated {
		t.Error("the rotation and its reason are not in the audit log")
	}
	if code, _ = f.post(t, "/ui/agents/"+id+"/rotate", sc, map[string]string{"csrf_token": csrf, "reason": "x", "grace": "forever"}, "", ""); code != http.StatusBadRequest {
		t.Errorf("bad grace: %d", code)
	}
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&#34;", `"`, "&quot;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">", "&#43;", "+", "&#39;", "'").Replace(s)
}
