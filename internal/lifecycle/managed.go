package lifecycle

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Managed credentials
//
// A credential Lanyard generates — every client secret, and a private_key_jwt key pair
// registered with "generate": true — is written to the secrets backend (Vault KV v2 in
// production) at AgentSecretPath, one KV version per credential, where the agent's
// runtime (Vault Agent, the Vault CSI provider) reads it. The database keeps only the
// secret's HMAC or the public key, and the path and version.
//
// The secret's data (all values strings):
//
//	type            "client_secret" or "private_key_jwt"
//	client_id       the agent's client id
//	credential_id   the credential it belongs to ("crd_…")
//	client_secret   the secret (client_secret only)
//	kid, alg        the key id (RFC 7638 thumbprint) and "ES256" (private_key_jwt only)
//	private_key_pem the P-256 private key, PKCS#8 PEM (private_key_jwt only)
//	private_key_jwk the same key as a private JWK with kid, alg and use (private_key_jwt only)
//	rotation_id     the rotation that wrote it, if one did

// AgentSecretPathPrefix is the secrets backend folder of agent credentials.
const AgentSecretPathPrefix = "lanyard/agents/"

// AgentSecretPath is where the credential of the agent name in namespace lives.
// Namespaces and names are DNS labels, so the path is always valid.
func AgentSecretPath(namespace, name string) string {
	return AgentSecretPathPrefix + namespace + "/" + name
}

// Secret data keys of managed credentials.
const (
	dataType       = "type"
	dataClientID   = "client_id"
	dataCredential = "credential_id"
	dataSecret     = "client_secret"
	dataKID        = "kid"
	dataAlg        = "alg"
	dataKeyPEM     = "private_key_pem"
	dataKeyJWK     = "private_key_jwk"
	dataRotation   = "rotation_id"
)

// UnavailableError reports that the secrets backend could not be reached or refused
// the operation (HTTP 503): nothing was changed, the request may be retried.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string {
	return "lifecycle: the secrets backend is unavailable: " + e.Err.Error()
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// managedStore is what managed credentials need beyond Store; gormstore provides it.
type managedStore interface {
	store.Rotations
}

func (s *Service) rotations() (managedStore, bool) {
	rs, ok := s.st.(managedStore)
	return rs, ok
}

// isManaged reports whether Lanyard holds (and so can rotate) the credential's secret.
func isManaged(c *store.Credential) bool {
	return c.Type == store.CredentialClientSecret || c.SecretPath != ""
}

// newMaterial generates a credential of type typ for agent a and returns the data to
// store in the secrets backend.
func newMaterial(a *store.Agent, typ, credID, rotationID string) (map[string]string, error) {
	data := map[string]string{dataType: typ, dataClientID: a.ClientID, dataCredential: credID}
	if rotationID != "" {
		data[dataRotation] = rotationID
	}
	switch typ {
	case store.CredentialClientSecret:
		secret, err := NewSecret(ClientSecretPrefix)
		if err != nil {
			return nil, err
		}
		data[dataSecret] = secret
	case store.CredentialPrivateKeyJWT:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("lifecycle: generate key: %w", err)
		}
		pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: "ES256", Use: "sig"}
		thumb, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("lifecycle: thumbprint: %w", err)
		}
		kid := base64.RawURLEncoding.EncodeToString(thumb)
		jwk, err := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: "ES256", Use: "sig"})
		if err != nil {
			return nil, fmt.Errorf("lifecycle: marshal key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("lifecycle: marshal key: %w", err)
		}
		data[dataKID], data[dataAlg] = kid, "ES256"
		data[dataKeyPEM] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		data[dataKeyJWK] = string(jwk)
		clear(der)
	default:
		return nil, fmt.Errorf("lifecycle: cannot generate a %q credential", typ)
	}
	return data, nil
}

// fillCredential sets the public half of cred (the secret's hash, or the public JWKS)
// from data read from or written to the secrets backend.
func (s *Service) fillCredential(data map[string]string, cred *store.Credential) error {
	if data[dataCredential] != cred.ID || data[dataType] != cred.Type {
		return fmt.Errorf("lifecycle: secret at %s belongs to credential %q (%s), want %q (%s)",
			cred.SecretPath, data[dataCredential], data[dataType], cred.ID, cred.Type)
	}
	switch cred.Type {
	case store.CredentialClientSecret:
		if data[dataSecret] == "" {
			return fmt.Errorf("lifecycle: secret at %s has no client_secret", cred.SecretPath)
		}
		cred.SecretHash = s.hasher.Hash(data[dataSecret])
	case store.CredentialPrivateKeyJWT:
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON([]byte(data[dataKeyJWK])); err != nil || k.IsPublic() {
			return fmt.Errorf("lifecycle: secret at %s has no usable private_key_jwk", cred.SecretPath)
		}
		set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
		if err != nil {
			return err
		}
		if _, err := ParseJWKS(set); err != nil {
			return fmt.Errorf("lifecycle: generated key: %w", err)
		}
		cred.JWKS = set
	}
	return nil
}

// storeNewSecret writes a registering agent's credential to the secrets backend
// before the agent exists in the database. It refuses a name that is taken first, so
// that a duplicate registration cannot write a new version over an existing agent's
// secret.
func (s *Service) storeNewSecret(ctx context.Context, a *store.Agent, cred *store.Credential, data map[string]string) error {
	if rs, ok := s.rotations(); ok {
		if _, err := rs.GetAgentByName(ctx, a.Namespace, a.Name); err == nil {
			return &ConflictError{Detail: fmt.Sprintf("an agent named %q already exists in namespace %q", a.Name, a.Namespace), Err: store.ErrConflict}
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("lifecycle: register: %w", err)
		}
	}
	cred.SecretPath = AgentSecretPath(a.Namespace, a.Name)
	v, err := s.opts.Secrets.Put(ctx, cred.SecretPath, data)
	if err != nil {
		return &UnavailableError{Err: err}
	}
	cred.SecretVersion = v
	return nil
}

// restoreAfterLostRace runs when a registration wrote its secret and then lost the
// race for the name to a concurrent one: the loser's version is now the latest at the
// path, so the winner's version is written again on top of it.
func (s *Service) restoreAfterLostRace(ctx context.Context, a *store.Agent, path string) {
	rs, ok := s.rotations()
	if !ok {
		return
	}
	winner, err := rs.GetAgentByName(ctx, a.Namespace, a.Name)
	if err != nil {
		return
	}
	creds, err := s.st.ListCredentials(ctx, winner.ID)
	if err != nil {
		return
	}
	for _, c := range creds {
		if c.State == store.CredentialActive && c.SecretPath == path && c.SecretVersion > 0 {
			if sec, err := s.opts.Secrets.Get(ctx, path, c.SecretVersion); err == nil {
				_, _ = s.opts.Secrets.Put(ctx, path, sec.Data)
			}
			return
		}
	}
}

// destroySecrets destroys the agent's secrets after decommissioning. A failure does not
// undo the decommissioning (its credentials are already gone from the database, so the
// secret authenticates nothing): it is audited and queued for the scheduler to retry.
func (s *Service) destroySecrets(ctx context.Context, actor string, a *store.Agent, creds []store.Credential) {
	if s.opts.Secrets == nil {
		return
	}
	paths := map[string]bool{}
	for _, c := range creds {
		if c.SecretPath != "" {
			paths[c.SecretPath] = true
		}
	}
	for p := range paths {
		err := s.opts.Secrets.Destroy(ctx, p)
		ev := audit.Event{Type: "credential.destroyed", Data: map[string]any{"secret_path": p}}
		if err != nil {
			ev.Type, ev.Outcome, ev.Reason = "credential.destroy_failed", "failure", "secrets backend: "+err.Error()
			if rs, ok := s.rotations(); ok {
				_ = rs.AddSecretDestroy(context.WithoutCancel(ctx), p, "decommission of "+a.ID)
				ev.Data["retry"] = true
			}
		}
		_ = s.record(ctx, actor, a, ev)
	}
}

// generatedKeyPEM returns the private key PEM of data, if any.
func generatedKeyPEM(data map[string]string) string { return data[dataKeyPEM] }

// graceOr returns d, or the service default when d < 0.
func (s *Service) graceOr(d time.Duration) time.Duration {
	if d < 0 {
		return s.opts.CredentialGrace
	}
	return d
}
