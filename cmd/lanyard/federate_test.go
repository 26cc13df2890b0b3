package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

const cliFederation = `{"agent_id":"agt_01","credentials":[{"id":"crd_f1","type":"federated","state":"active",
"created_at":"2026-01-02T03:04:05Z","issuer":"https://login.microsoftonline.com/t1/v2.0","subject":"oid-1",
"audience":"api://lanyard","allowed_client_ids":["app-1"],"require_app_token":true}],"entra_federation":true,
"issuer":"https://lanyard.example.com","subject":"agt_01","audience":"api://AzureADTokenExchange"}`

func TestAgentFederateShowAddRemove(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"GET /v1/agents/agt_01/federation": cliReply(200, cliFederation),
		"POST /v1/agents/agt_01/federation/credentials": func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			want := `{"issuer":"https://login.microsoftonline.com/t1/v2.0","subject":"oid-1","audience":"api://lanyard","allowed_client_ids":["app-1"],"require_app_token":true}`
			if string(b) != want {
				t.Errorf("body = %s\nwant   %s", b, want)
			}
			cliReply(201, cliFederation)(w, r)
		},
		"DELETE /v1/agents/agt_01/federation/credentials/crd_f1": cliReply(409, `{"title":"Conflict","status":409,"detail":"this is the federated agent's last credential"}`),
		"PATCH /v1/agents/agt_01": func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if string(b) != `{"entra_federation":true}` {
				t.Errorf("patch body = %s", b)
			}
			cliReply(200, cliAgent)(w, r)
		},
	})
	out, _, err := cliRun(t, "agent", "federate", "show", "agt_01")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range [][2]string{
		{"Inbound credentials", "crd_f1 issuer https://login.microsoftonline.com/t1/v2.0 subject oid-1 audience api://lanyard client ids app-1 app-only"},
		{"Entra federation", "yes"}, {"Entra FIC issuer", "https://lanyard.example.com"},
		{"Entra FIC subject", "agt_01"}, {"Entra FIC audience", "api://AzureADTokenExchange"},
	} {
		if !cliHasRow(out, row[0], row[1]) {
			t.Errorf("show: no row %q = %q in\n%s", row[0], row[1], out)
		}
	}
	if _, _, err := cliRun(t, "agent", "federate", "add", "agt_01", "--issuer", "https://login.microsoftonline.com/t1/v2.0",
		"--subject", "oid-1", "--audience", "api://lanyard", "--client-id", "app-1", "--app-only"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cliRun(t, "agent", "federate", "add", "agt_01", "--issuer", "https://x"); err == nil || !strings.Contains(err.Error(), "required flag") {
		t.Errorf("add without subject: %v", err)
	}
	if _, _, err := cliRun(t, "agent", "federate", "remove", "agt_01", "crd_f1"); err == nil || !strings.Contains(err.Error(), "409 Conflict: this is the federated agent's last credential") {
		t.Errorf("remove: %v", err)
	}
	if _, _, err := cliRun(t, "agent", "federate", "entra", "agt_01", "--enable"); err != nil {
		t.Errorf("entra --enable: %v", err)
	}
	if _, _, err := cliRun(t, "agent", "federate", "entra", "agt_01"); err == nil {
		t.Error("entra without --enable or --disable was accepted")
	}
}

func TestAgentFederateIssuers(t *testing.T) {
	cliFakeAdmin(t, map[string]http.HandlerFunc{
		"POST /v1/federation/issuers": func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if string(b) != `{"issuer":"https://sts.windows.net/t1/"}` {
				t.Errorf("body = %s", b)
			}
			cliReply(201, `{"issuer":"https://sts.windows.net/t1/","kind":"entra","algs":["RS256"],"source":"api","keys":3}`)(w, r)
		},
		"GET /v1/federation/issuers": cliReply(200, `{"items":[{"issuer":"https://sts.windows.net/t1/","kind":"entra","algs":["RS256"],"source":"api","keys":0,"last_error":"jwks: HTTP 503"}]}`),
		"DELETE /v1/federation/issuers": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("issuer") != "https://sts.windows.net/t1/" {
				t.Errorf("query = %s", r.URL.RawQuery)
			}
			w.WriteHeader(http.StatusNoContent)
		},
	})
	out, _, err := cliRun(t, "agent", "federate", "trust", "https://sts.windows.net/t1/")
	if err != nil || out != "trusted https://sts.windows.net/t1/ (entra, RS256; 3 keys)\n" {
		t.Errorf("trust: %q %v", out, err)
	}
	out, _, err = cliRun(t, "agent", "federate", "issuers")
	if err != nil || !strings.Contains(out, "https://sts.windows.net/t1/") || !strings.Contains(out, "jwks: HTTP 503") {
		t.Errorf("issuers: %q %v", out, err)
	}
	out, _, err = cliRun(t, "agent", "federate", "untrust", "https://sts.windows.net/t1/")
	if err != nil || out != "no longer trusted: https://sts.windows.net/t1/\n" {
		t.Errorf("untrust: %q %v", out, err)
	}
}
