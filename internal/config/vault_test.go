package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestVaultEnvironment(t *testing.T) {
	t.Run("VAULT_ variables are honoured", func(t *testing.T) {
		cfg, err := load(t, nil, map[string]string{
			"LANYARD_SECRETS": "vault", "VAULT_ADDR": "https://vault.example:8200", "VAULT_TOKEN": "hvs.x",
			"VAULT_NAMESPACE": "team-a", "VAULT_TLS_SERVER_NAME": "vault.internal",
		})
		if err != nil {
			t.Fatal(err)
		}
		v := cfg.Vault
		if v.Addr != "https://vault.example:8200" || v.Token != "hvs.x" || v.Namespace != "team-a" || v.TLSServerName != "vault.internal" {
			t.Fatalf("Vault = %+v", v)
		}
		if v.Mount != "secret" || v.Auth != "token" || v.Timeout != 10*time.Second {
			t.Fatalf("defaults not applied: %+v", v)
		}
	})
	t.Run("LANYARD_VAULT_ wins over VAULT_", func(t *testing.T) {
		cfg, err := load(t, nil, map[string]string{
			"LANYARD_SECRETS": "vault", "VAULT_ADDR": "https://a:8200", "LANYARD_VAULT_ADDR": "https://b:8200", "VAULT_TOKEN": "t",
		})
		if err != nil || cfg.Vault.Addr != "https://b:8200" {
			t.Fatalf("Addr = %q, %v", cfg.Vault.Addr, err)
		}
	})
	t.Run("flag wins over both", func(t *testing.T) {
		cfg, err := load(t, []string{"--vault-addr=https://c:8200", "--vault-mount=kv"}, map[string]string{
			"LANYARD_SECRETS": "vault", "VAULT_ADDR": "https://a:8200", "VAULT_TOKEN": "t",
		})
		if err != nil || cfg.Vault.Addr != "https://c:8200" || cfg.Vault.Mount != "kv" {
			t.Fatalf("Vault = %+v, %v", cfg.Vault, err)
		}
	})
	t.Run("VAULT_SKIP_VERIFY refused", func(t *testing.T) {
		_, err := load(t, nil, map[string]string{
			"LANYARD_SECRETS": "vault", "VAULT_ADDR": "https://a:8200", "VAULT_TOKEN": "t", "VAULT_SKIP_VERIFY": "1",
		})
		wantProblems(t, problems(t, err), "VAULT_SKIP_VERIFY")
	})
	t.Run("token never logged", func(t *testing.T) {
		cfg, _ := load(t, nil, map[string]string{"LANYARD_SECRETS": "vault", "VAULT_ADDR": "https://a:8200", "VAULT_TOKEN": "hvs.SECRET"})
		var b strings.Builder
		slog.New(slog.NewTextHandler(&b, nil)).Info("config", "cfg", cfg)
		if strings.Contains(b.String(), "hvs.SECRET") {
			t.Fatalf("token logged: %s", b.String())
		}
	})
	t.Run("rotation options", func(t *testing.T) {
		cfg, err := load(t, nil, map[string]string{
			"LANYARD_AGENT_CREDENTIAL_ROTATION": "720h", "LANYARD_SIGNING_KEY_ROTATION": "168h", "LANYARD_ROTATION_CHECK_INTERVAL": "30s",
		})
		if err != nil {
			t.Fatal(err)
		}
		r := cfg.Rotation
		if r.AgentCredentialEvery != 720*time.Hour || r.SigningKeyEvery != 168*time.Hour || r.CheckInterval != 30*time.Second {
			t.Fatalf("Rotation = %+v", r)
		}
	})
}
