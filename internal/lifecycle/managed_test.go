package lifecycle_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/secrets/local"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// newManagedFixture is a Service with a local secrets backend.
func newManagedFixture(t *testing.T) (*lifecycle.Service, secrets.Backend) {
	t.Helper()
	st := storetest.OpenSQLite(t)
	log := audit.New(st, nil, audit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- log.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	master := make([]byte, 32)
	rand.Read(master)
	sb, err := local.New(t.TempDir(), master)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	hasher, _ := lifecycle.NewSecretHasher(pepper)
	return lifecycle.New(st, log, hasher, lifecycle.Options{Secrets: sb}), sb
}

func TestRegisterManagedCredentialValidation(t *testing.T) {
	svc, _ := newManagedFixture(t)
	plain := newFixture(t).svc
	cases := []struct {
		name  string
		svc   *lifecycle.Service
		cred  *lifecycle.CredentialRequest
		field string
	}{
		{"generate with jwks", svc, &lifecycle.CredentialRequest{Type: store.CredentialPrivateKeyJWT, Generate: true,
			JWKS: json.RawMessage(`{"keys":[]}`)}, "credential.jwks"},
		{"generate for a client secret", svc, &lifecycle.CredentialRequest{Type: store.CredentialClientSecret, Generate: true}, "credential.generate"},
		{"generate without a secrets backend", plain, &lifecycle.CredentialRequest{Type: store.CredentialPrivateKeyJWT, Generate: true}, "credential.generate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := validRequest(t)
			req.Credential = tc.cred
			_, err := tc.svc.Register(t.Context(), actor, req)
			var ve *lifecycle.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != tc.field {
				t.Fatalf("Register = %v, want one problem on %s", err, tc.field)
			}
		})
	}
}

func TestRegisterManagedCredentials(t *testing.T) {
	svc, sb := newManagedFixture(t)
	req := validRequest(t)
	req.Credential = &lifecycle.CredentialRequest{Type: store.CredentialPrivateKeyJWT, Generate: true}
	reg, err := svc.Register(t.Context(), actor, req)
	if err != nil {
		t.Fatal(err)
	}
	c := reg.Agent.Credentials[0]
	if c.SecretPath != lifecycle.AgentSecretPath(req.Namespace, req.Name) || c.SecretVersion != 1 {
		t.Fatalf("credential location = %q v%d", c.SecretPath, c.SecretVersion)
	}
	if strings.Contains(string(c.JWKS), `"d"`) || !strings.Contains(string(c.JWKS), `"kid"`) {
		t.Fatalf("stored JWKS = %s", c.JWKS)
	}
	sec, err := sb.Get(t.Context(), c.SecretPath, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "client_id", "credential_id", "kid", "alg", "private_key_pem", "private_key_jwk"} {
		if sec.Data[k] == "" {
			t.Errorf("stored secret lacks %s", k)
		}
	}
	if sec.Data["private_key_pem"] != reg.PrivateKeyPEM || sec.Data["credential_id"] != c.ID {
		t.Error("stored secret and registration response differ")
	}
	if _, err := lifecycle.ParseJWKS(c.JWKS); err != nil {
		t.Fatalf("stored JWKS does not parse: %v", err)
	}
	// Decommissioning destroys it.
	if _, err := svc.Transition(t.Context(), actor, reg.Agent.ID, lifecycle.Decommission, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Get(t.Context(), c.SecretPath, 0); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("after decommission Get = %v", err)
	}
}
