package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"time"
)

// VaultConfig configures the vault secrets backend. Each option is also read from the
// environment variable every Vault client honours (VAULT_ADDR, VAULT_TOKEN, …) when its
// LANYARD_VAULT_* form is unset.
type VaultConfig struct {
	// Addr is Vault's URL (LANYARD_VAULT_ADDR or VAULT_ADDR). Required for vault.
	Addr string
	// Token is the token of the token auth method (VAULT_TOKEN). Never logged.
	Token string
	// Namespace is the Vault Enterprise namespace (VAULT_NAMESPACE). Default none.
	Namespace string
	// Mount is the KV v2 mount. Default "secret".
	Mount string
	// PathPrefix is prepended to every path Lanyard writes. Default none.
	PathPrefix string
	// Auth is token (default), approle or kubernetes.
	Auth string
	// RoleID and SecretIDFile are the AppRole credentials (VAULT_ROLE_ID is read too);
	// AppRoleMount its mount. Default mount "approle".
	RoleID       string
	SecretIDFile string
	AppRoleMount string
	// K8sRole, K8sTokenFile and K8sMount configure Kubernetes auth. Defaults: token
	// file /var/run/secrets/kubernetes.io/serviceaccount/token, mount "kubernetes".
	K8sRole      string
	K8sTokenFile string
	K8sMount     string
	// CACert, ClientCert, ClientKey and TLSServerName are the TLS options
	// (VAULT_CACERT, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_TLS_SERVER_NAME).
	CACert        string
	ClientCert    string
	ClientKey     string
	TLSServerName string
	// SkipVerify ("true"/"false", VAULT_SKIP_VERIFY) disables certificate checks; it is
	// refused unless InsecureDev is "true" (LANYARD_VAULT_INSECURE_DEV): a development switch.
	SkipVerify  string
	InsecureDev string
	// Timeout bounds each Vault request. Default 10s.
	Timeout time.Duration
}

// LogValue implements slog.LogValuer without the token.
func (v VaultConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", v.Addr),
		slog.String("mount", v.Mount),
		slog.String("path_prefix", v.PathPrefix),
		slog.String("namespace", v.Namespace),
		slog.String("auth", v.Auth),
		slog.Bool("token_set", v.Token != ""),
	)
}

// SkipVerifyBool and InsecureDevBool parse the two switches (validated by Validate).
func (v VaultConfig) SkipVerifyBool() bool {
	b, _ := strconv.ParseBool(orFalse(v.SkipVerify))
	return b
}
func (v VaultConfig) InsecureDevBool() bool {
	b, _ := strconv.ParseBool(orFalse(v.InsecureDev))
	return b
}

func orFalse(s string) string {
	if s == "" {
		return "false"
	}
	return s
}

// RotationConfig holds the rotation schedules (server defaults; agents may override
// theirs) and the scheduler's settings.
type RotationConfig struct {
	// AgentCredentialEvery is how often Lanyard rotates the agent credentials it
	// generated (client secrets, generated private keys). 0 (default) disables
	// scheduled agent rotation: the new secret reaches the agent only through the
	// secrets backend, so enable it once agents read their credential from Vault.
	// The grace is LANYARD_CREDENTIAL_GRACE.
	AgentCredentialEvery time.Duration
	// SigningKeyEvery is how often each signing key is rotated. Default 168h (7 days);
	// 0 disables scheduled signing key rotation.
	SigningKeyEvery time.Duration
	// SigningKeyPublishAhead is how long a new signing key sits in the JWKS before it
	// signs anything, so relying parties' JWKS caches pick it up first. Default 1h.
	SigningKeyPublishAhead time.Duration
	// CheckInterval is how often the scheduler looks for due rotations. Default 1m.
	CheckInterval time.Duration
	// LeaseTTL is how long the scheduler's database lease lasts without renewal; a
	// replica that dies holding it is taken over after this. Default 2m.
	LeaseTTL time.Duration
}

// DefaultRotation returns the built-in rotation settings.
func DefaultRotation() RotationConfig {
	return RotationConfig{
		SigningKeyEvery:        7 * 24 * time.Hour,
		SigningKeyPublishAhead: time.Hour,
		CheckInterval:          time.Minute,
		LeaseTTL:               2 * time.Minute,
	}
}

func (c *Config) vaultOptions() []option {
	v, r := &c.Vault, &c.Rotation
	return []option{
		{name: "vault-addr", usage: "Vault URL", str: &v.Addr, alias: "VAULT_ADDR"},
		{name: "vault-token", usage: "Vault token (token auth)", str: &v.Token, alias: "VAULT_TOKEN"},
		{name: "vault-namespace", usage: "Vault Enterprise namespace", str: &v.Namespace, alias: "VAULT_NAMESPACE"},
		{name: "vault-mount", usage: "Vault KV v2 mount", str: &v.Mount},
		{name: "vault-path-prefix", usage: "prefix of every path Lanyard writes in the KV mount", str: &v.PathPrefix},
		{name: "vault-auth", usage: "Vault auth method: token, approle or kubernetes", str: &v.Auth},
		{name: "vault-role-id", usage: "AppRole role id", str: &v.RoleID, alias: "VAULT_ROLE_ID"},
		{name: "vault-secret-id-file", usage: "file holding the AppRole secret id", str: &v.SecretIDFile},
		{name: "vault-approle-mount", usage: "AppRole auth mount", str: &v.AppRoleMount},
		{name: "vault-k8s-role", usage: "Kubernetes auth role", str: &v.K8sRole},
		{name: "vault-k8s-token-file", usage: "Kubernetes service account token file", str: &v.K8sTokenFile},
		{name: "vault-k8s-mount", usage: "Kubernetes auth mount", str: &v.K8sMount},
		{name: "vault-cacert", usage: "PEM CA certificates to verify Vault with", str: &v.CACert, alias: "VAULT_CACERT"},
		{name: "vault-client-cert", usage: "PEM client certificate for Vault", str: &v.ClientCert, alias: "VAULT_CLIENT_CERT"},
		{name: "vault-client-key", usage: "PEM client key for Vault", str: &v.ClientKey, alias: "VAULT_CLIENT_KEY"},
		{name: "vault-tls-server-name", usage: "server name to verify in Vault's certificate", str: &v.TLSServerName, alias: "VAULT_TLS_SERVER_NAME"},
		{name: "vault-skip-verify", usage: "skip Vault certificate verification (development only; needs --vault-insecure-dev)", str: &v.SkipVerify, alias: "VAULT_SKIP_VERIFY"},
		{name: "vault-insecure-dev", usage: "allow --vault-skip-verify (never in production)", str: &v.InsecureDev},
		{name: "vault-timeout", usage: "timeout of each Vault request", dur: &v.Timeout},
		{name: "agent-credential-rotation", usage: "rotate Lanyard-generated agent credentials this often (0: never)", dur: &r.AgentCredentialEvery},
		{name: "signing-key-rotation", usage: "rotate each signing key this often (0: never)", dur: &r.SigningKeyEvery},
		{name: "signing-key-publish-ahead", usage: "how long a new signing key is in the JWKS before it signs", dur: &r.SigningKeyPublishAhead},
		{name: "rotation-check-interval", usage: "how often the scheduler looks for due rotations", dur: &r.CheckInterval},
		{name: "rotation-lease-ttl", usage: "scheduler lease lifetime; a dead replica's lease is taken over after it", dur: &r.LeaseTTL},
	}
}

func (v *VaultConfig) validate() []string {
	var p []string
	if v.Addr == "" {
		p = append(p, "LANYARD_VAULT_ADDR (or VAULT_ADDR): required with LANYARD_SECRETS=vault")
	} else if u, err := url.Parse(v.Addr); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p = append(p, fmt.Sprintf("LANYARD_VAULT_ADDR: %q must be an http(s) URL", v.Addr))
	}
	switch v.Auth {
	case "token":
		if v.Token == "" {
			p = append(p, "LANYARD_VAULT_TOKEN (or VAULT_TOKEN): required with LANYARD_VAULT_AUTH=token")
		}
	case "approle":
		if v.RoleID == "" {
			p = append(p, "LANYARD_VAULT_ROLE_ID: required with LANYARD_VAULT_AUTH=approle")
		}
		if v.SecretIDFile == "" {
			p = append(p, "LANYARD_VAULT_SECRET_ID_FILE: required with LANYARD_VAULT_AUTH=approle")
		} else if _, err := os.Stat(v.SecretIDFile); err != nil {
			p = append(p, fmt.Sprintf("LANYARD_VAULT_SECRET_ID_FILE: %v", err))
		}
	case "kubernetes":
		if v.K8sRole == "" {
			p = append(p, "LANYARD_VAULT_K8S_ROLE: required with LANYARD_VAULT_AUTH=kubernetes")
		}
	default:
		p = append(p, fmt.Sprintf("LANYARD_VAULT_AUTH: %q is not token, approle or kubernetes", v.Auth))
	}
	for env, val := range map[string]string{"LANYARD_VAULT_SKIP_VERIFY": v.SkipVerify, "LANYARD_VAULT_INSECURE_DEV": v.InsecureDev} {
		if _, err := strconv.ParseBool(orFalse(val)); err != nil {
			p = append(p, fmt.Sprintf("%s: %q is not true or false", env, val))
		}
	}
	if v.SkipVerifyBool() && !v.InsecureDevBool() {
		p = append(p, "LANYARD_VAULT_SKIP_VERIFY (or VAULT_SKIP_VERIFY): refused; it turns off Vault's certificate check. Set LANYARD_VAULT_CACERT instead, or LANYARD_VAULT_INSECURE_DEV=true on a development machine")
	}
	if (v.ClientCert == "") != (v.ClientKey == "") {
		p = append(p, "LANYARD_VAULT_CLIENT_CERT and LANYARD_VAULT_CLIENT_KEY must be set together")
	}
	for env, f := range map[string]string{"LANYARD_VAULT_CACERT": v.CACert, "LANYARD_VAULT_CLIENT_CERT": v.ClientCert, "LANYARD_VAULT_CLIENT_KEY": v.ClientKey} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				p = append(p, fmt.Sprintf("%s: %v", env, err))
			}
		}
	}
	if v.Timeout <= 0 {
		p = append(p, "LANYARD_VAULT_TIMEOUT: must be positive")
	}
	return p
}

func (r *RotationConfig) validate(maxTokenTTL time.Duration) []string {
	var p []string
	if r.AgentCredentialEvery != 0 && r.AgentCredentialEvery < time.Minute {
		p = append(p, fmt.Sprintf("LANYARD_AGENT_CREDENTIAL_ROTATION: %s is under 1m (0 disables)", r.AgentCredentialEvery))
	}
	if r.SigningKeyEvery != 0 && r.SigningKeyEvery < time.Minute {
		p = append(p, fmt.Sprintf("LANYARD_SIGNING_KEY_ROTATION: %s is under 1m (0 disables)", r.SigningKeyEvery))
	}
	if r.SigningKeyPublishAhead < 0 || (r.SigningKeyEvery > 0 && r.SigningKeyPublishAhead >= r.SigningKeyEvery) {
		p = append(p, fmt.Sprintf("LANYARD_SIGNING_KEY_PUBLISH_AHEAD: %s must be >= 0 and shorter than LANYARD_SIGNING_KEY_ROTATION", r.SigningKeyPublishAhead))
	}
	if r.CheckInterval < time.Second || r.CheckInterval > time.Hour {
		p = append(p, fmt.Sprintf("LANYARD_ROTATION_CHECK_INTERVAL: %s is outside 1s..1h", r.CheckInterval))
	}
	if r.LeaseTTL < 10*time.Second {
		p = append(p, fmt.Sprintf("LANYARD_ROTATION_LEASE_TTL: %s is too short (at least 10s)", r.LeaseTTL))
	}
	return p
}
