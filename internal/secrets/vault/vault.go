// Package vault implements secrets.Backend on HashiCorp Vault's KV version 2 secrets
// engine, for deployments that keep every secret outside Lanyard's database and share
// them between replicas.
//
// # Layout
//
// A secret at path p is the KV v2 secret <mount>/data/<prefix>/p (prefix optional), so
// each Put is a new KV version and Get(p, n) reads version n. Destroy deletes the
// secret's metadata, which destroys every version and the version history (KV v2
// "metadata delete"), so the next Put starts again at version 1. KV v2 keeps at most the
// mount's max_versions versions (10 by default); Lanyard only ever reads the versions
// its database references (the current and, during a rotation, the previous one).
//
// Values are stored as JSON strings exactly as given; a value Lanyard did not write (a
// number, say) is reported as an error rather than converted.
//
// # Authentication
//
// Token, AppRole (github.com/hashicorp/vault/api/auth/approle) and Kubernetes
// (…/auth/kubernetes) logins are supported. Run keeps the token alive with the client's
// LifetimeWatcher; when the token cannot be renewed any more (not renewable, max TTL
// reached, revoked) Run logs in again with the configured method, retrying with
// exponential backoff. A static token that is not renewable is used until it expires.
//
// Nothing here logs secret values or tokens.
package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"

	"github.com/lanyardhq/lanyard/internal/secrets"
)

// Authentication methods.
const (
	AuthToken      = "token"
	AuthAppRole    = "approle"
	AuthKubernetes = "kubernetes"
)

// Defaults of Config fields.
const (
	DefaultMount           = "secret"
	DefaultAppRoleMount    = "approle"
	DefaultKubernetesMount = "kubernetes"
	DefaultK8sTokenFile    = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultTimeout         = 10 * time.Second
	defaultMaxRetries      = 2
	maxReloginBackoff      = time.Minute
	initialReloginBackoff  = time.Second
)

// Config configures the Vault backend. Zero values take the documented defaults.
type Config struct {
	// Address is Vault's URL (VAULT_ADDR), e.g. https://vault.example.com:8200. Required.
	Address string
	// Mount is the KV v2 mount path. Default "secret".
	Mount string
	// PathPrefix, if set, is prepended to every path (it must itself be a valid
	// secrets path), so that several Lanyard installations can share a mount.
	PathPrefix string
	// Namespace is the Vault Enterprise namespace (X-Vault-Namespace header). Default none.
	Namespace string

	// Auth is AuthToken (default), AuthAppRole or AuthKubernetes.
	Auth string
	// Token is the Vault token for AuthToken (VAULT_TOKEN).
	Token string
	// RoleID and SecretIDFile are the AppRole credentials; the secret id is read from
	// the file at every login, so it can be rotated underneath Lanyard.
	RoleID       string
	SecretIDFile string
	// AppRoleMount is the AppRole auth mount. Default "approle".
	AppRoleMount string
	// K8sRole is the Kubernetes auth role; K8sTokenFile the service account token
	// (default the in-pod path); K8sMount the auth mount (default "kubernetes").
	K8sRole      string
	K8sTokenFile string
	K8sMount     string

	// CACert is a PEM file of CA certificates to trust (VAULT_CACERT). Default: the
	// system roots.
	CACert string
	// ClientCert and ClientKey are a PEM client certificate for mutual TLS.
	ClientCert string
	ClientKey  string
	// TLSServerName overrides the server name checked in Vault's certificate.
	TLSServerName string
	// InsecureSkipVerify disables certificate verification. New refuses it unless
	// AllowInsecure is also set (a development-only switch).
	InsecureSkipVerify bool
	AllowInsecure      bool

	// Timeout bounds each request to Vault. Default 10s.
	Timeout time.Duration
	// MaxRetries is how often the client retries a request that failed with a 5xx or
	// a connection error (with backoff). Default 2; negative means none.
	MaxRetries int
	// Logger receives renewal and login messages. Default: discard.
	Logger *slog.Logger
	// OnError, if set, is called with every failed Vault operation (for the audit log
	// and metrics). op is "put", "get", "destroy", "ping", "login" or "renew".
	OnError func(op string, err error)
}

// LogValue implements slog.LogValuer without the token or any credential.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("address", c.Address),
		slog.String("mount", c.Mount),
		slog.String("path_prefix", c.PathPrefix),
		slog.String("namespace", c.Namespace),
		slog.String("auth", c.Auth),
		slog.Bool("token_set", c.Token != ""),
	)
}

// Backend is a secrets.Backend on Vault KV v2. Create it with New; call Run to keep its
// token alive.
type Backend struct {
	cfg    Config
	client *api.Client
	kv     *api.KVv2
	log    *slog.Logger
	login  api.AuthMethod // nil for AuthToken

	mu      sync.Mutex
	authSec *api.Secret // the login (or renew-self) result the watcher renews
	lastErr atomic.Pointer[error]
}

var _ secrets.Backend = (*Backend)(nil)

// New validates cfg, builds the client and authenticates (logs in for AppRole and
// Kubernetes). It fails if Vault cannot be reached or refuses the credentials, so a
// misconfiguration stops start-up.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	vc := api.DefaultConfig() // reads the VAULT_* environment; everything relevant is overridden below
	vc.Address = cfg.Address
	vc.Timeout = cfg.Timeout
	vc.MaxRetries = cfg.MaxRetries
	if cfg.MaxRetries < 0 {
		vc.MaxRetries = 0
	}
	tc := &api.TLSConfig{
		CACert:        cfg.CACert,
		ClientCert:    cfg.ClientCert,
		ClientKey:     cfg.ClientKey,
		TLSServerName: cfg.TLSServerName,
		Insecure:      cfg.InsecureSkipVerify,
	}
	if err := vc.ConfigureTLS(tc); err != nil {
		return nil, fmt.Errorf("vault: TLS configuration: %w", err)
	}
	if t, ok := vc.HttpClient.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
		t.TLSClientConfig.MinVersion = tls.VersionTLS12
	}
	client, err := api.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: client: %w", err)
	}
	// NewClient picks up VAULT_TOKEN and VAULT_NAMESPACE from the environment; the
	// configuration is the only source here.
	client.ClearToken()
	client.ClearNamespace()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}
	b := &Backend{cfg: cfg, client: client, kv: client.KVv2(cfg.Mount), log: cfg.Logger}
	switch cfg.Auth {
	case AuthToken:
		client.SetToken(cfg.Token)
	case AuthAppRole:
		b.login, err = approle.NewAppRoleAuth(cfg.RoleID, &approle.SecretID{FromFile: cfg.SecretIDFile}, approle.WithMountPath(cfg.AppRoleMount))
	case AuthKubernetes:
		b.login, err = kubernetes.NewKubernetesAuth(cfg.K8sRole, kubernetes.WithServiceAccountTokenPath(cfg.K8sTokenFile), kubernetes.WithMountPath(cfg.K8sMount))
	}
	if err != nil {
		return nil, fmt.Errorf("vault: %s auth: %w", cfg.Auth, err)
	}
	if err := b.authenticate(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

func (c *Config) normalize() error {
	var p []string
	if c.Address == "" {
		p = append(p, "address (VAULT_ADDR) is required")
	} else if !strings.HasPrefix(c.Address, "https://") && !strings.HasPrefix(c.Address, "http://") {
		p = append(p, fmt.Sprintf("address %q must be an http(s) URL", c.Address))
	}
	if c.Mount == "" {
		c.Mount = DefaultMount
	}
	c.Mount = strings.Trim(c.Mount, "/")
	if c.PathPrefix != "" {
		c.PathPrefix = strings.Trim(c.PathPrefix, "/")
		if err := secrets.ValidPath(c.PathPrefix); err != nil {
			p = append(p, fmt.Sprintf("path prefix: %v", err))
		}
	}
	if c.Auth == "" {
		c.Auth = AuthToken
	}
	switch c.Auth {
	case AuthToken:
		if c.Token == "" {
			p = append(p, "token auth needs a token (VAULT_TOKEN)")
		}
	case AuthAppRole:
		if c.RoleID == "" || c.SecretIDFile == "" {
			p = append(p, "approle auth needs a role id and a secret id file")
		}
		if c.AppRoleMount == "" {
			c.AppRoleMount = DefaultAppRoleMount
		}
	case AuthKubernetes:
		if c.K8sRole == "" {
			p = append(p, "kubernetes auth needs a role")
		}
		if c.K8sTokenFile == "" {
			c.K8sTokenFile = DefaultK8sTokenFile
		}
		if c.K8sMount == "" {
			c.K8sMount = DefaultKubernetesMount
		}
	default:
		p = append(p, fmt.Sprintf("auth method %q is not token, approle or kubernetes", c.Auth))
	}
	if c.InsecureSkipVerify && !c.AllowInsecure {
		p = append(p, "skipping TLS verification is refused unless the development switch allows it")
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		p = append(p, "client certificate and key must be set together")
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = defaultMaxRetries
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(p) > 0 {
		return fmt.Errorf("vault: %s", strings.Join(p, "; "))
	}
	return nil
}

// authenticate logs in (AppRole, Kubernetes) or checks the static token, and keeps
// the result for the lifetime watcher.
func (b *Backend) authenticate(ctx context.Context) error {
	if b.login == nil {
		// A static token: renew-self returns the Auth block the watcher needs, when
		// the token is renewable at all.
		info, err := b.client.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			b.fail("login", err)
			return fmt.Errorf("vault: token lookup: %w", err)
		}
		renewable, _ := info.TokenIsRenewable()
		ttl, _ := info.TokenTTL()
		var sec *api.Secret
		if renewable && ttl > 0 {
			if sec, err = b.client.Auth().Token().RenewSelfWithContext(ctx, 0); err != nil {
				b.fail("renew", err)
				return fmt.Errorf("vault: token renew: %w", err)
			}
		} else if ttl > 0 {
			b.log.Warn("vault: token is not renewable; it will expire", "ttl", ttl)
		}
		b.mu.Lock()
		b.authSec = sec
		b.mu.Unlock()
		return nil
	}
	sec, err := b.client.Auth().Login(ctx, b.login)
	if err != nil {
		b.fail("login", err)
		return fmt.Errorf("vault: %s login: %w", b.cfg.Auth, err)
	}
	if sec == nil || sec.Auth == nil {
		err := fmt.Errorf("vault: %s login returned no token", b.cfg.Auth)
		b.fail("login", err)
		return err
	}
	b.log.Info("vault: logged in", "auth", b.cfg.Auth, "ttl", time.Duration(sec.Auth.LeaseDuration)*time.Second, "renewable", sec.Auth.Renewable)
	b.mu.Lock()
	b.authSec = sec
	b.mu.Unlock()
	return nil
}

// Run keeps the token alive until ctx ends: it renews it with a LifetimeWatcher and,
// when renewal stops (not renewable, max TTL reached, revoked, Vault unreachable for
// too long), logs in again with exponential backoff. A login token that is not
// renewable is replaced by a new login after two thirds of its TTL. With a static
// token that cannot be renewed, Run just waits. It returns nil when ctx ends.
func (b *Backend) Run(ctx context.Context) error {
	backoff := initialReloginBackoff
	for {
		b.mu.Lock()
		sec := b.authSec
		b.mu.Unlock()
		switch {
		case sec != nil && sec.Auth != nil && sec.Auth.Renewable:
			err := b.watch(ctx, sec)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				b.fail("renew", err)
				b.log.Warn("vault: token renewal failed", "err", err)
			} else {
				b.log.Info("vault: token reached its maximum TTL")
			}
		case b.login != nil && sec != nil && sec.Auth != nil && sec.Auth.LeaseDuration > 0:
			wait := time.Duration(sec.Auth.LeaseDuration) * time.Second * 2 / 3
			if !sleep(ctx, max(wait, time.Second)) {
				return nil
			}
		default:
			<-ctx.Done()
			return nil
		}
		if b.login == nil {
			b.log.Error("vault: the static token can no longer be renewed; Vault operations fail once it expires")
			<-ctx.Done()
			return nil
		}
		for {
			err := b.authenticate(ctx)
			if err == nil {
				backoff = initialReloginBackoff
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			b.log.Warn("vault: login failed; retrying", "err", err, "in", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, maxReloginBackoff)
		}
	}
}

// watch renews sec until renewal ends; it returns the watcher's final error (nil when
// the token reached its max TTL and must be replaced by a new login).
func (b *Backend) watch(ctx context.Context, sec *api.Secret) error {
	w, err := b.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: sec})
	if err != nil {
		return err
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.DoneCh():
			return err
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				b.log.Debug("vault: token renewed", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Client returns the underlying Vault client (for Transit and tests). Its token is
// managed by Run.
func (b *Backend) Client() *api.Client { return b.client }

// Mount returns the KV v2 mount the backend writes to.
func (b *Backend) Mount() string { return b.cfg.Mount }

// FullPath returns where path lives inside the mount (the prefix applied), for
// documentation and for agents' runtimes: <mount>/data/<FullPath>.
func (b *Backend) FullPath(path string) string {
	if b.cfg.PathPrefix == "" {
		return path
	}
	return b.cfg.PathPrefix + "/" + path
}

// LastError returns the last error of a Vault operation, or nil after a success.
func (b *Backend) LastError() error {
	if p := b.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (b *Backend) fail(op string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	b.lastErr.Store(&err)
	if b.cfg.OnError != nil {
		b.cfg.OnError(op, err)
	}
}

func (b *Backend) ok() { b.lastErr.Store(nil) }

// Put implements secrets.Backend.
func (b *Backend) Put(ctx context.Context, path string, data map[string]string) (int, error) {
	if err := secrets.ValidPath(path); err != nil {
		return 0, err
	}
	if err := secrets.ValidData(data); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	in := make(map[string]any, len(data))
	for k, v := range data {
		in[k] = v
	}
	s, err := b.kv.Put(ctx, b.FullPath(path), in)
	if err != nil {
		b.fail("put", err)
		return 0, fmt.Errorf("vault: put %s: %w", path, err)
	}
	if s == nil || s.VersionMetadata == nil || s.VersionMetadata.Version < 1 {
		err := fmt.Errorf("vault: put %s: response carries no version", path)
		b.fail("put", err)
		return 0, err
	}
	b.ok()
	return s.VersionMetadata.Version, nil
}

// Get implements secrets.Backend.
func (b *Backend) Get(ctx context.Context, path string, version int) (*secrets.Secret, error) {
	if err := secrets.ValidPath(path); err != nil {
		return nil, err
	}
	if version < 0 {
		return nil, fmt.Errorf("vault: get %s: negative version %d", path, version)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var (
		s   *api.KVSecret
		err error
	)
	if version == 0 {
		s, err = b.kv.Get(ctx, b.FullPath(path))
	} else {
		s, err = b.kv.GetVersion(ctx, b.FullPath(path), version)
	}
	if errors.Is(err, api.ErrSecretNotFound) || isNotFound(err) {
		b.ok()
		return nil, fmt.Errorf("%w: %s version %d", secrets.ErrNotFound, path, version)
	}
	if err != nil {
		b.fail("get", err)
		return nil, fmt.Errorf("vault: get %s: %w", path, err)
	}
	b.ok()
	if s == nil || s.Data == nil || s.VersionMetadata == nil || !s.VersionMetadata.DeletionTime.IsZero() || s.VersionMetadata.Destroyed {
		// A deleted or destroyed version is gone as far as Lanyard is concerned.
		return nil, fmt.Errorf("%w: %s version %d", secrets.ErrNotFound, path, version)
	}
	out := &secrets.Secret{
		Data:      make(map[string]string, len(s.Data)),
		Version:   s.VersionMetadata.Version,
		CreatedAt: s.VersionMetadata.CreatedTime.UTC(),
	}
	for k, v := range s.Data {
		str, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("vault: get %s: value of key %q is a %T, not a string (not written by Lanyard)", path, k, v)
		}
		out.Data[k] = str
	}
	return out, nil
}

// isNotFound recognises Vault's 404 for a version that does not exist.
func isNotFound(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// Destroy implements secrets.Backend with a KV v2 metadata delete.
func (b *Backend) Destroy(ctx context.Context, path string) error {
	if err := secrets.ValidPath(path); err != nil {
		return err
	}
	if err := b.kv.DeleteMetadata(ctx, b.FullPath(path)); err != nil {
		b.fail("destroy", err)
		return fmt.Errorf("vault: destroy %s: %w", path, err)
	}
	b.ok()
	return nil
}

// Ping implements secrets.Backend: Vault answers and the token is valid.
func (b *Backend) Ping(ctx context.Context) error {
	if _, err := b.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		b.fail("ping", err)
		return fmt.Errorf("vault: %w", err)
	}
	b.ok()
	return nil
}
