package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/secrets/vault/vaulttest"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// lanyardPolicy is the least-privilege Vault policy the README documents, for the KV
// v2 mount "secret" and path prefix "e2e" (LANYARD_VAULT_PATH_PREFIX).
const lanyardPolicy = `
path "secret/data/e2e/lanyard/*"     { capabilities = ["create", "read", "update"] }
path "secret/metadata/e2e/lanyard/*" { capabilities = ["delete"] }
`

// TestVault runs the user's steps of "Using Vault" against a real Vault dev server
// (one for the whole test), on SQLite and PostgreSQL: the server logs in with AppRole
// under the least-privilege policy, agents' credentials and Lanyard's signing keys live
// in Vault, rotation is scheduled and manual, and a Vault outage degrades /readyz while
// tokens keep being issued.
func TestVault(t *testing.T) {
	srv, err := vaulttest.Start()
	if err != nil {
		if os.Getenv(vaulttest.RequireServicesEnv) == "1" {
			t.Fatalf("Vault is required: %v", err)
		}
		t.Skipf("Vault not available: %v", err)
	}
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	if err := srv.PutPolicy(ctx, "lanyard", lanyardPolicy); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := srv.EnableAppRole(ctx, "lanyard", "lanyard", "1h", "24h")
	if err != nil {
		t.Fatal(err)
	}
	secretIDFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretIDFile, []byte(secretID), 0o600); err != nil {
		t.Fatal(err)
	}
	root := srv.Client()

	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := ""
			if db == "postgres" {
				dsn = storetest.PostgresDSN(t)
			}
			proxy, err := vaulttest.NewProxy(srv.Addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(proxy.Close)
			e := startWith(t, dsn, func(c *config.Config) {
				c.Secrets = "vault"
				c.Vault.Addr = proxy.Addr
				c.Vault.Auth = "approle"
				c.Vault.RoleID = roleID
				c.Vault.SecretIDFile = secretIDFile
				c.Vault.PathPrefix = "e2e"
				c.Vault.Timeout = 3 * time.Second
				// A fast scheduler, so the test can watch it complete a rotation.
				c.Rotation.CheckInterval = time.Second
				c.Rotation.SigningKeyPublishAhead = 2 * time.Second
				c.Rotation.LeaseTTL = 10 * time.Second
			})
			kv := root.KVv2("secret")
			ns := "vault-" + db

			// Step 2: register a client_secret agent; the secret is in Vault.
			r := e.api(http.MethodPost, "/v1/agents", map[string]any{
				"name": "invoice-triage", "namespace": ns, "owner": "ap", "allowed_scopes": []string{"invoices:read"},
				"credential": map[string]any{"type": "client_secret"},
			})
			if r.status != http.StatusCreated {
				t.Fatalf("register: %d %s", r.status, r.body)
			}
			body := r.json(t)
			id, s1 := body["id"].(string), body["client_secret"].(string)
			cred := body["credentials"].([]any)[0].(map[string]any)
			path := "lanyard/agents/" + ns + "/invoice-triage"
			if cred["secret_path"] != path || cred["secret_version"] != 1.0 {
				t.Fatalf("credential = %v", cred)
			}
			sec, err := kv.Get(ctx, "e2e/"+path)
			if err != nil || sec.Data["client_secret"] != s1 || sec.Data["client_id"] != id {
				t.Fatalf("Vault does not hold the agent's secret at secret/data/e2e/%s: %v", path, err)
			}
			token := func(secret string) error {
				cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: e.base + "/oauth2/token", Scopes: []string{"invoices:read"}}
				_, err := cc.Token(ctx)
				return err
			}
			if err := token(s1); err != nil {
				t.Fatalf("token with the secret read from Vault: %v", err)
			}

			// A generated private_key_jwt key pair.
			r = e.api(http.MethodPost, "/v1/agents", map[string]any{
				"name": "keyed", "namespace": ns, "owner": "ap", "credential": map[string]any{"type": "private_key_jwt", "generate": true},
			})
			if r.status != http.StatusCreated {
				t.Fatalf("register generated key: %d %s", r.status, r.body)
			}
			if ksec, err := kv.Get(ctx, "e2e/lanyard/agents/"+ns+"/keyed"); err != nil || !strings.Contains(fmt.Sprint(ksec.Data["private_key_pem"]), "PRIVATE KEY") {
				t.Fatalf("generated key not in Vault: %v", err)
			}
			if strings.Contains(string(r.body), `"d":`) && strings.Contains(string(r.body), "credentials") {
				// The private key is returned once as PEM, never as part of the stored JWKS.
				t.Log("response carries a private JWK")
			}

			// Lanyard's own signing keys live in Vault too.
			keysList, err := root.Logical().List("secret/metadata/e2e/lanyard/signing-keys")
			if err != nil || keysList == nil || len(keysList.Data["keys"].([]any)) < 2 {
				t.Fatalf("signing keys not in Vault: %v", err)
			}

			// Step 3: a per-agent schedule, the status, and a manual rotation.
			r = e.api(http.MethodPut, "/v1/agents/"+id+"/rotation", map[string]any{"interval": "720h", "grace": "24h"})
			if r.status != http.StatusOK || r.json(t)["source"] != "agent" || r.json(t)["next_due_at"] == nil {
				t.Fatalf("set policy: %d %s", r.status, r.body)
			}
			if r = e.api(http.MethodPut, "/v1/agents/"+id+"/rotation", map[string]any{"interval": "1s"}); r.status != http.StatusBadRequest {
				t.Fatalf("a 1s interval: %d", r.status)
			}
			r = e.api(http.MethodPost, "/v1/agents/"+id+"/credentials/rotate", map[string]any{"grace": "1h"})
			if r.status != http.StatusOK {
				t.Fatalf("rotate: %d %s", r.status, r.body)
			}
			s2 := r.json(t)["client_secret"].(string)
			if sec, err := kv.Get(ctx, "e2e/"+path); err != nil || sec.Data["client_secret"] != s2 || sec.VersionMetadata.Version != 2 {
				t.Fatalf("Vault's latest version is not the rotated secret: %v", err)
			}
			for _, s := range []string{s1, s2} {
				if err := token(s); err != nil {
					t.Errorf("token during the grace: %v", err)
				}
			}
			r = e.api(http.MethodGet, "/v1/rotation", nil)
			if r.status != http.StatusOK || !strings.Contains(string(r.body), `"agent_credentials"`) || !strings.Contains(string(r.body), `"signing_keys"`) {
				t.Fatalf("GET /v1/rotation: %d %s", r.status, r.body)
			}
			r = e.api(http.MethodPost, "/v1/signing-keys/rotate", map[string]any{"alg": "ES256"})
			if r.status != http.StatusAccepted || r.json(t)["step"] != "next" {
				t.Fatalf("signing key rotation: %d %s", r.status, r.body)
			}
			newKID := r.json(t)["new_ref"].(string)
			if jwks := e.do(mustGet(t, e.base+"/oauth2/jwks")); !strings.Contains(string(jwks.body), newKID) {
				t.Fatal("the next key is not published")
			}
			// The server's scheduler activates it once the publish-ahead period is over.
			deadline := time.Now().Add(20 * time.Second)
			for {
				r = e.api(http.MethodGet, "/v1/rotation", nil)
				if strings.Contains(string(r.body), `"kid":"`+newKID+`"`) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the scheduler did not activate the new key: %s", r.body)
				}
				time.Sleep(200 * time.Millisecond)
			}
			m := e.do(mustGet(t, e.base+"/metrics"))
			for _, want := range []string{"lanyard_rotation_compliance_ratio", "lanyard_secrets_backend_up", "lanyard_rotation_credentials"} {
				if !strings.Contains(string(m.body), want) {
					t.Errorf("metrics lack %s", want)
				}
			}

			// A Vault outage: ready but degraded, tokens still issued, writes refused.
			proxy.Down()
			r = e.do(mustGet(t, e.base+"/readyz"))
			if r.status != http.StatusOK || r.json(t)["degraded"] != true || !strings.Contains(string(r.body), `"secrets":"degraded"`) {
				t.Fatalf("readyz with Vault down: %d %s", r.status, r.body)
			}
			if err := token(s2); err != nil {
				t.Fatalf("token with Vault down: %v", err)
			}
			r = e.api(http.MethodPost, "/v1/agents", map[string]any{
				"name": "during-outage", "namespace": ns, "owner": "ap", "credential": map[string]any{"type": "client_secret"}})
			if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "secrets-unavailable") {
				t.Fatalf("register with Vault down: %d %s", r.status, r.body)
			}
			m = e.do(mustGet(t, e.base+"/metrics"))
			if !strings.Contains(string(m.body), `lanyard_secrets_backend_up{backend="vault"} 0`) {
				t.Errorf("lanyard_secrets_backend_up is not 0 during the outage")
			}
			if err := proxy.Up(); err != nil {
				t.Fatal(err)
			}
			r = e.do(mustGet(t, e.base+"/readyz"))
			if r.status != http.StatusOK || r.json(t)["degraded"] != nil {
				t.Fatalf("readyz after Vault came back: %d %s", r.status, r.body)
			}
			r = e.api(http.MethodGet, "/v1/audit?"+url.Values{"type": {"secrets.backend_unavailable"}}.Encode(), nil)
			if r.status != http.StatusOK || !strings.Contains(string(r.body), "secrets.backend_unavailable") {
				t.Errorf("no secrets.backend_unavailable audit event: %s", r.body)
			}

			// Decommissioning destroys the secret in Vault.
			if r = e.api(http.MethodPost, "/v1/agents/"+id+"/decommission", nil); r.status != http.StatusOK {
				t.Fatalf("decommission: %d %s", r.status, r.body)
			}
			if _, err := kv.Get(ctx, "e2e/"+path); err == nil {
				t.Fatal("the agent's secret is still in Vault after decommissioning")
			}
		})
	}
}
