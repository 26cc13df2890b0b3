package config

import (
	"testing"
	"time"
)

func TestValidateUI(t *testing.T) {
	const tid = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []string
	}{
		{"entra", func(c *Config) { c.UIEntraTenant, c.UIOIDCClientID = tid, "app" }, nil},
		{"generic issuer", func(c *Config) { c.UIOIDCIssuer, c.UIOIDCClientID = "https://accounts.example.com", "app" }, nil},
		{"http issuer on localhost", func(c *Config) { c.UIOIDCIssuer, c.UIOIDCClientID = "http://127.0.0.1:5556/dex", "app" }, nil},
		{"http issuer elsewhere", func(c *Config) { c.UIOIDCIssuer, c.UIOIDCClientID = "http://idp.example.com", "app" }, []string{"LANYARD_UI_OIDC_ISSUER"}},
		{"bad tenant", func(c *Config) { c.UIEntraTenant, c.UIOIDCClientID = "not a tenant", "app" }, []string{"LANYARD_UI_ENTRA_TENANT", "LANYARD_UI_OIDC_CLIENT_ID"}},
		{"client id without issuer", func(c *Config) { c.UIOIDCClientID = "app" }, []string{"LANYARD_UI_OIDC_CLIENT_ID"}},
		{"issuer without client id", func(c *Config) { c.UIOIDCIssuer = "https://accounts.example.com" }, []string{"LANYARD_UI_OIDC_CLIENT_ID"}},
		{"scopes without openid", func(c *Config) { c.UIEntraTenant, c.UIOIDCClientID, c.UIOIDCScopes = tid, "app", "profile" }, []string{"LANYARD_UI_OIDC_SCOPES"}},
		{"role map", func(c *Config) { c.UIRoleMap = "a=admin,b=operator:finance|hr" }, nil},
		{"bad role map", func(c *Config) { c.UIRoleMap = "a=root" }, []string{"LANYARD_UI_ROLE_MAP"}},
		{"idle too short", func(c *Config) { c.UISessionIdle = time.Second }, []string{"LANYARD_UI_SESSION_IDLE"}},
		{"max below idle", func(c *Config) { c.UISessionMax = time.Minute }, []string{"LANYARD_UI_SESSION_MAX"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			tt.modify(&cfg)
			err := cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			wantProblems(t, problems(t, err), tt.want...)
		})
	}
	cfg := Defaults()
	cfg.UIEntraTenant, cfg.UIOIDCClientID = tid, "app"
	if err := cfg.Validate(); err != nil || cfg.UIOIDCIssuer != "https://login.microsoftonline.com/"+tid+"/v2.0" || !cfg.UIOIDCEnabled() {
		t.Errorf("the Entra issuer is derived from the tenant: %q, %v", cfg.UIOIDCIssuer, err)
	}
}
