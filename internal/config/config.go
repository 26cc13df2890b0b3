// Package config holds the typed configuration of `lanyard serve` and loads it from, in
// increasing order of precedence: built-in defaults, an optional YAML file, LANYARD_*
// environment variables, and command-line flags.
//
// Every option has exactly one name, used three ways: the flag `--token-ttl`, the
// environment variable `LANYARD_TOKEN_TTL` and the YAML key `token_ttl`. These names are
// part of the product contract. Validate reports every problem at once so a bad
// configuration is fixed in one round trip.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Config is the server configuration. The default of each field is given beside it.
type Config struct {
	// Addr is the listen address. Default ":8080".
	Addr string
	// Issuer is the OAuth issuer identifier and public base URL. Default "http://localhost:8080".
	Issuer string
	// DataDir holds the SQLite database, the local secrets and the master key. Default "./data".
	DataDir string
	// DatabaseURL is "postgres://…" for PostgreSQL, or a SQLite file path.
	// Default: DataDir/lanyard.db.
	DatabaseURL string
	// AdminToken, when set, is the bootstrap admin bearer token. When empty, one is
	// generated at first start, printed once and stored hashed.
	AdminToken string
	// Secrets selects the secrets backend: "local" (default) or "vault".
	Secrets string
	// MasterKey is the base64 AES-256 key of the local secrets backend. Default: a
	// 0600 key file in DataDir, created at first start.
	MasterKey string
	// LogLevel is debug, info (default), warn or error.
	LogLevel string
	// LogFormat is text (default) or json.
	LogFormat string
	// TLSCert and TLSKey enable HTTPS when both are set.
	TLSCert string
	TLSKey  string
	// TokenTTL is the access token lifetime for agents that do not set their own. Default 5m.
	TokenTTL time.Duration
	// MaxTokenTTL caps every access token lifetime, whatever the agent asks. Default 1h.
	MaxTokenTTL time.Duration
	// DefaultAudience is the aud of tokens requested without a resource. Default: Issuer.
	DefaultAudience string
	// CredentialGrace is how long a rotated-out agent credential keeps working. Default 24h.
	CredentialGrace time.Duration
	// MaxBodyBytes limits every request body. Default 65536.
	MaxBodyBytes int64
	// ShutdownTimeout bounds graceful shutdown. Default 15s.
	ShutdownTimeout time.Duration
	// SigstoreTrustedRoot is a trusted_root.json (public-good or private Sigstore) that
	// Sigstore bundles in attestation evidence are verified against. Default: none.
	SigstoreTrustedRoot string
	// SigstorePublicKey is a PEM public key for key-based Sigstore bundles. Default: none.
	SigstorePublicKey string
	// AttestationMaxChallenges is how many unexpired attestation challenges one agent may
	// hold at once. Default 16.
	AttestationMaxChallenges int64
	// TPMEKCABundle is a PEM bundle of TPM manufacturer CA certificates. When set, TPM
	// attestation key enrolment requires an EK certificate issued by one of them.
	// Default: none (EK certificates are checked against the EK only).
	TPMEKCABundle string
	// TPMAllowUnenrolledAK is "true" to let agents register TPM attestation keys that
	// have not completed enrolment by credential activation. Default "false".
	TPMAllowUnenrolledAK string

	// Vault holds the options of the vault secrets backend (LANYARD_SECRETS=vault).
	Vault VaultConfig
	// Rotation holds the rotation schedules and the scheduler's settings.
	Rotation RotationConfig
	// FederationIssuers is a comma-separated list of external token issuers trusted for
	// federated credentials (Entra ID tenants, GitHub Actions, …), each with its kind's
	// defaults; the /v1/federation/issuers API adds more. Default: none.
	FederationIssuers string
	// FederationRefresh is how often trusted issuers' keys are refetched. Default 1h.
	FederationRefresh time.Duration
	// FederationMinRefetch is the least time between two fetches of an issuer's keys
	// caused by an unknown kid. Default 1m.
	FederationMinRefetch time.Duration

	// Web UI single sign-on (see README "Web UI"). The UI always accepts the bootstrap
	// admin token; OIDC sign-in is enabled when UIOIDCClientID is set.
	//
	// UIOIDCIssuer is the OpenID provider's issuer URL. Default: derived from
	// UIEntraTenant as https://login.microsoftonline.com/<tenant>/v2.0.
	UIOIDCIssuer string
	// UIEntraTenant is the Microsoft Entra tenant id; when set, ID tokens must carry it
	// as tid. Default: none.
	UIEntraTenant string
	// UIOIDCClientID and UIOIDCClientSecret are the UI's client registration at the
	// provider (the redirect URI is <issuer>/ui/auth/callback). Default: none.
	UIOIDCClientID     string
	UIOIDCClientSecret string
	// UIOIDCScopes are the scopes requested at sign-in. Default "openid profile email".
	UIOIDCScopes string
	// UIRoleClaims are the ID-token claims whose values are mapped to roles. Default
	// "groups,roles" (Entra security groups and app roles).
	UIRoleClaims string
	// UIRoleMap maps claim values to roles: "value=role[:ns1|ns2],…". Default: none,
	// so single sign-on users get no role until it is set.
	UIRoleMap string
	// UISessionIdle ends a UI session after this long without a request. Default 30m.
	UISessionIdle time.Duration
	// UISessionMax ends a UI session this long after sign-in, active or not. Default 12h.
	UISessionMax time.Duration
}

// Defaults returns the built-in configuration.
func Defaults() Config {
	return Config{
		Addr:            ":8080",
		Issuer:          "http://localhost:8080",
		DataDir:         "./data",
		Secrets:         "local",
		LogLevel:        "info",
		LogFormat:       "text",
		TokenTTL:        5 * time.Minute,
		MaxTokenTTL:     time.Hour,
		CredentialGrace: 24 * time.Hour,
		MaxBodyBytes:    64 << 10,

		AttestationMaxChallenges: 16,
		ShutdownTimeout:          15 * time.Second,
		Vault:                    VaultConfig{Mount: "secret", Auth: "token", AppRoleMount: "approle", K8sMount: "kubernetes", K8sTokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token", Timeout: 10 * time.Second},
		Rotation:                 DefaultRotation(),

		FederationRefresh:    time.Hour,
		FederationMinRefetch: time.Minute,
		UIOIDCScopes:         "openid profile email",
		UIRoleClaims:         "groups,roles",
		UISessionIdle:        30 * time.Minute,
		UISessionMax:         12 * time.Hour,
	}
}

// option binds one configuration name to a field.
type option struct {
	name  string // flag name; env is LANYARD_ + upper snake; YAML key is snake
	usage string
	str   *string
	dur   *time.Duration
	i64   *int64
	// alias is a second environment variable read when the LANYARD_ one is unset
	// (VAULT_ADDR and friends, as every Vault client honours them).
	alias string
}

func (o option) env() string {
	return "LANYARD_" + strings.ToUpper(strings.ReplaceAll(o.name, "-", "_"))
}

func (o option) yamlKey() string { return strings.ReplaceAll(o.name, "-", "_") }

func (o option) set(v string) error {
	switch {
	case o.str != nil:
		*o.str = v
	case o.dur != nil:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration such as 5m or 1h30m: %q", v)
		}
		*o.dur = d
	case o.i64 != nil:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		*o.i64 = n
	}
	return nil
}

func (c *Config) options() []option {
	return append([]option{
		{name: "addr", usage: "listen address", str: &c.Addr},
		{name: "issuer", usage: "issuer identifier and public base URL", str: &c.Issuer},
		{name: "data-dir", usage: "directory for the SQLite database, local secrets and master key", str: &c.DataDir},
		{name: "database-url", usage: "postgres://… for PostgreSQL, or a SQLite file (default <data-dir>/lanyard.db)", str: &c.DatabaseURL},
		{name: "admin-token", usage: "bootstrap admin token (default: generated at first start and printed once)", str: &c.AdminToken},
		{name: "secrets", usage: "secrets backend: local or vault", str: &c.Secrets},
		{name: "master-key", usage: "base64 32-byte master key of the local secrets backend (default: <data-dir>/master.key)", str: &c.MasterKey},
		{name: "log-level", usage: "debug, info, warn or error", str: &c.LogLevel},
		{name: "log-format", usage: "text or json", str: &c.LogFormat},
		{name: "tls-cert", usage: "TLS certificate file (PEM); enables HTTPS with --tls-key", str: &c.TLSCert},
		{name: "tls-key", usage: "TLS private key file (PEM)", str: &c.TLSKey},
		{name: "token-ttl", usage: "default access token lifetime", dur: &c.TokenTTL},
		{name: "max-token-ttl", usage: "maximum access token lifetime", dur: &c.MaxTokenTTL},
		{name: "default-audience", usage: "aud of tokens requested without a resource (default: the issuer)", str: &c.DefaultAudience},
		{name: "credential-grace", usage: "how long a rotated-out agent credential keeps working", dur: &c.CredentialGrace},
		{name: "max-body-bytes", usage: "maximum request body size in bytes", i64: &c.MaxBodyBytes},
		{name: "shutdown-timeout", usage: "graceful shutdown limit", dur: &c.ShutdownTimeout},
		{name: "sigstore-trusted-root", usage: "trusted_root.json to verify Sigstore bundles in attestation evidence", str: &c.SigstoreTrustedRoot},
		{name: "sigstore-public-key", usage: "PEM public key to verify key-based Sigstore bundles", str: &c.SigstorePublicKey},
		{name: "attestation-max-challenges", usage: "unexpired attestation challenges one agent may hold at once", i64: &c.AttestationMaxChallenges},
		{name: "tpm-ek-ca-bundle", usage: "PEM bundle of TPM manufacturer CAs; when set, AK enrolment requires an EK certificate they issued", str: &c.TPMEKCABundle},
		{name: "tpm-allow-unenrolled-ak", usage: "true to accept TPM attestation keys that have not completed enrolment (default false)", str: &c.TPMAllowUnenrolledAK},
		{name: "federation-issuers", usage: "comma-separated external token issuers trusted for federated credentials", str: &c.FederationIssuers},
		{name: "federation-refresh", usage: "how often trusted issuers' signing keys are refetched", dur: &c.FederationRefresh},
		{name: "federation-min-refetch", usage: "least time between key fetches caused by an unknown kid", dur: &c.FederationMinRefetch},
		{name: "ui-oidc-issuer", usage: "web UI sign-in: OpenID provider issuer URL (default: from --ui-entra-tenant)", str: &c.UIOIDCIssuer},
		{name: "ui-entra-tenant", usage: "web UI sign-in: Microsoft Entra tenant id (required tid claim)", str: &c.UIEntraTenant},
		{name: "ui-oidc-client-id", usage: "web UI sign-in: client id at the provider (enables OIDC sign-in)", str: &c.UIOIDCClientID},
		{name: "ui-oidc-client-secret", usage: "web UI sign-in: client secret at the provider", str: &c.UIOIDCClientSecret},
		{name: "ui-oidc-scopes", usage: "web UI sign-in: space-separated scopes", str: &c.UIOIDCScopes},
		{name: "ui-role-claims", usage: "web UI sign-in: comma-separated ID-token claims mapped to roles", str: &c.UIRoleClaims},
		{name: "ui-role-map", usage: "web UI sign-in: claim value to role map, value=role[:ns1|ns2],…", str: &c.UIRoleMap},
		{name: "ui-session-idle", usage: "web UI session idle timeout", dur: &c.UISessionIdle},
		{name: "ui-session-max", usage: "web UI session absolute timeout", dur: &c.UISessionMax},
	}, c.vaultOptions()...)
}

// Flags registers one flag per option on fs, with c's current values as defaults.
// Call Load after fs has been parsed.
func (c *Config) Flags(fs *pflag.FlagSet) {
	for _, o := range c.options() {
		usage := o.usage + " (env " + o.env() + ")"
		if o.alias != "" {
			usage = o.usage + " (env " + o.env() + " or " + o.alias + ")"
		}
		switch {
		case o.str != nil:
			fs.String(o.name, *o.str, usage)
		case o.dur != nil:
			fs.Duration(o.name, *o.dur, usage)
		case o.i64 != nil:
			fs.Int64(o.name, *o.i64, usage)
		}
	}
	fs.String("config", "", "YAML configuration file (keys are the flag names with _ for -)")
}

// Load fills c from the YAML file named by --config (if any), the environment (getenv)
// and the flags explicitly set on fs, then validates. Problems from every source are
// reported together.
func (c *Config) Load(fs *pflag.FlagSet, getenv func(string) string) error {
	var problems []string
	opts := c.options()

	if path, _ := fs.GetString("config"); path != "" {
		problems = append(problems, c.loadYAML(path, opts)...)
	}
	for _, o := range opts {
		name := o.env()
		v := getenv(name)
		if v == "" && o.alias != "" {
			name, v = o.alias, getenv(o.alias)
		}
		if v != "" {
			if err := o.set(v); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			}
		}
	}
	for _, o := range opts {
		if f := fs.Lookup(o.name); f != nil && f.Changed {
			if err := o.set(f.Value.String()); err != nil {
				problems = append(problems, fmt.Sprintf("--%s: %v", o.name, err))
			}
		}
	}
	if err := c.Validate(); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			problems = append(problems, ve.Problems...)
		} else {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

func (c *Config) loadYAML(path string, opts []option) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{fmt.Sprintf("config file: %v", err)}
	}
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return []string{fmt.Sprintf("config file %s: %v", path, err)}
	}
	known := make(map[string]option, len(opts))
	for _, o := range opts {
		known[o.yamlKey()] = o
	}
	var problems []string
	for key, node := range raw {
		o, ok := known[key]
		if !ok {
			problems = append(problems, fmt.Sprintf("config file %s: unknown key %q", path, key))
			continue
		}
		if node.Kind != yaml.ScalarNode {
			problems = append(problems, fmt.Sprintf("config file %s: %s must be a single value", path, key))
			continue
		}
		if err := o.set(node.Value); err != nil {
			problems = append(problems, fmt.Sprintf("config file %s: %s: %v", path, key, err))
		}
	}
	return problems
}

// ValidationError lists every configuration problem found.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	return "invalid configuration:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Validate checks c and fills derived defaults (DatabaseURL, DefaultAudience). It
// reports every problem in one *ValidationError.
func (c *Config) Validate() error {
	var p []string
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		p = append(p, fmt.Sprintf("LANYARD_ADDR: %q is not host:port (%v)", c.Addr, err))
	}
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		p = append(p, fmt.Sprintf("LANYARD_ISSUER: %q must be an http(s) URL with a host and no query or fragment", c.Issuer))
	} else if strings.HasSuffix(c.Issuer, "/") {
		p = append(p, fmt.Sprintf("LANYARD_ISSUER: %q must not end with /", c.Issuer))
	}
	if c.DataDir == "" {
		p = append(p, "LANYARD_DATA_DIR: must not be empty")
	}
	if c.DatabaseURL == "" && c.DataDir != "" {
		c.DatabaseURL = filepath.Join(c.DataDir, "lanyard.db")
	}
	if c.DefaultAudience == "" {
		c.DefaultAudience = c.Issuer
	}
	switch c.Secrets {
	case "local":
	case "vault":
		p = append(p, c.Vault.validate()...)
	default:
		p = append(p, fmt.Sprintf("LANYARD_SECRETS: %q is not local or vault", c.Secrets))
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		p = append(p, "LANYARD_LOG_LEVEL: "+err.Error())
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		p = append(p, fmt.Sprintf("LANYARD_LOG_FORMAT: %q is not text or json", c.LogFormat))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		p = append(p, "LANYARD_TLS_CERT and LANYARD_TLS_KEY must be set together")
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		p = append(p, fmt.Sprintf("LANYARD_TOKEN_TTL: %s is outside 1m..24h", c.TokenTTL))
	}
	if c.MaxTokenTTL < c.TokenTTL || c.MaxTokenTTL > 24*time.Hour {
		p = append(p, fmt.Sprintf("LANYARD_MAX_TOKEN_TTL: %s must be between LANYARD_TOKEN_TTL (%s) and 24h", c.MaxTokenTTL, c.TokenTTL))
	}
	if c.CredentialGrace < 0 || c.CredentialGrace > 30*24*time.Hour {
		p = append(p, fmt.Sprintf("LANYARD_CREDENTIAL_GRACE: %s is outside 0..720h", c.CredentialGrace))
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 16<<20 {
		p = append(p, fmt.Sprintf("LANYARD_MAX_BODY_BYTES: %d is outside 1024..16777216", c.MaxBodyBytes))
	}
	if c.AttestationMaxChallenges < 1 || c.AttestationMaxChallenges > 100000 {
		p = append(p, fmt.Sprintf("LANYARD_ATTESTATION_MAX_CHALLENGES: %d is outside 1..100000", c.AttestationMaxChallenges))
	}
	for _, iss := range strings.Split(c.FederationIssuers, ",") {
		iss = strings.TrimSpace(iss)
		if iss == "" {
			continue
		}
		u, err := url.Parse(iss)
		loopback := err == nil && u.Scheme == "http" && (u.Hostname() == "localhost" || net.ParseIP(u.Hostname()).IsLoopback())
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || (u.Scheme != "https" && !loopback) {
			p = append(p, fmt.Sprintf("LANYARD_FEDERATION_ISSUERS: %q is not an https issuer URL", iss))
		}
	}
	if c.FederationRefresh < time.Minute || c.FederationRefresh > 24*time.Hour {
		p = append(p, fmt.Sprintf("LANYARD_FEDERATION_REFRESH: %s is outside 1m..24h", c.FederationRefresh))
	}
	if c.FederationMinRefetch < 100*time.Millisecond || c.FederationMinRefetch > time.Hour {
		p = append(p, fmt.Sprintf("LANYARD_FEDERATION_MIN_REFETCH: %s is outside 100ms..1h", c.FederationMinRefetch))
	}
	if c.SigstoreTrustedRoot != "" && c.SigstorePublicKey != "" {
		p = append(p, "LANYARD_SIGSTORE_TRUSTED_ROOT and LANYARD_SIGSTORE_PUBLIC_KEY are exclusive: choose one")
	}
	for env, f := range map[string]string{"LANYARD_SIGSTORE_TRUSTED_ROOT": c.SigstoreTrustedRoot, "LANYARD_SIGSTORE_PUBLIC_KEY": c.SigstorePublicKey} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				p = append(p, fmt.Sprintf("%s: %v", env, err))
			}
		}
	}
	if c.TPMEKCABundle != "" {
		if _, err := os.Stat(c.TPMEKCABundle); err != nil {
			p = append(p, fmt.Sprintf("LANYARD_TPM_EK_CA_BUNDLE: %v", err))
		}
	}
	if _, err := c.AllowUnenrolledAK(); err != nil {
		p = append(p, "LANYARD_TPM_ALLOW_UNENROLLED_AK: "+err.Error())
	}
	if c.ShutdownTimeout <= 0 {
		p = append(p, "LANYARD_SHUTDOWN_TIMEOUT: must be positive")
	}
	p = append(p, c.Rotation.validate(c.MaxTokenTTL)...)
	p = append(p, c.validateUI()...)
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// IsPostgres reports whether DatabaseURL names a PostgreSQL database.
func (c *Config) IsPostgres() bool {
	return strings.HasPrefix(c.DatabaseURL, "postgres://") || strings.HasPrefix(c.DatabaseURL, "postgresql://")
}

// LogValue redacts secrets when the configuration is logged.
func (c Config) LogValue() slog.Value {
	db := redactDSN(c.DatabaseURL)
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("issuer", c.Issuer),
		slog.String("data_dir", c.DataDir),
		slog.String("database", db),
		slog.String("secrets", c.Secrets),
		slog.Bool("admin_token_set", c.AdminToken != ""),
		slog.Bool("master_key_set", c.MasterKey != ""),
		slog.Bool("tls", c.TLSCert != ""),
		slog.Duration("token_ttl", c.TokenTTL),
		slog.Duration("max_token_ttl", c.MaxTokenTTL),
		slog.Any("vault", c.Vault),
	)
}

// redactDSN hides the password of a database URL, whether it sits in the userinfo or in
// a password query parameter (pgx accepts both). A URL that does not parse is not
// printed at all: it may hold a password in a form we cannot find.
func redactDSN(dsn string) string {
	if !strings.Contains(dsn, "://") {
		return dsn // a SQLite file path
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable database URL, not shown)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
	}
	q := u.Query()
	for k := range q {
		if strings.EqualFold(k, "password") {
			q.Set(k, "REDACTED")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ParseLevel maps a level name to a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// AllowUnenrolledAK reports whether TPMAllowUnenrolledAK is true ("" is false).
func (c *Config) AllowUnenrolledAK() (bool, error) {
	switch strings.ToLower(c.TPMAllowUnenrolledAK) {
	case "", "false", "0", "no":
		return false, nil
	case "true", "1", "yes":
		return true, nil
	}
	return false, fmt.Errorf("%q is not true or false", c.TPMAllowUnenrolledAK)
}
