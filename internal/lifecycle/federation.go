package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/store"
)

// EntraAudience is the audience Entra ID requires of an external token it exchanges
// (workload identity federation).
const EntraAudience = "api://AzureADTokenExchange"

// MaxFederatedCredentials bounds an agent's federated credentials (Entra ID's own limit
// per application is 20).
const MaxFederatedCredentials = 20

// FederatedCredentialRequest names the external token that authenticates an agent: its
// iss, sub and one aud, compared exactly, and optionally the azp/appid values accepted
// and whether an Entra app-only token (idtyp "app") is required.
type FederatedCredentialRequest struct {
	Issuer           string   `json:"issuer,omitempty"`
	Subject          string   `json:"subject,omitempty"`
	Audience         string   `json:"audience,omitempty"`
	AllowedClientIDs []string `json:"allowed_client_ids,omitempty"`
	RequireAppToken  bool     `json:"require_app_token,omitempty"`
}

func (r *FederatedCredentialRequest) isZero() bool {
	return r.Issuer == "" && r.Subject == "" && r.Audience == "" && len(r.AllowedClientIDs) == 0 && !r.RequireAppToken
}

// IssuerTrust says whether an external issuer is trusted (package federation).
type IssuerTrust interface {
	Trusted(issuer string) bool
}

// SetIssuerTrust sets what decides whether a federated credential's issuer is trusted.
// Without it every federated credential is refused.
func (s *Service) SetIssuerTrust(t IssuerTrust) { s.trust = t }

// federated validates r and copies it into cred.
func (v *validator) federated(field string, r *FederatedCredentialRequest, trust IssuerTrust, cred *store.Credential) {
	switch {
	case r.Issuer == "":
		v.add(field+".issuer", "is required for federated")
	case trust == nil || !trust.Trusted(r.Issuer):
		v.add(field+".issuer", "%q is not a trusted federation issuer; an admin adds it first (POST /v1/federation/issuers)", clipText(r.Issuer))
	}
	// Entra ID allows subjects of up to 600 characters.
	v.text(field+".subject", r.Subject, true, 600)
	v.text(field+".audience", r.Audience, true, 600)
	if r.Audience != "" {
		if u, err := url.Parse(r.Audience); err != nil || (u.Scheme == "" && len(r.Audience) < 3) {
			v.add(field+".audience", "must be a URI or an application id")
		}
	}
	if len(r.AllowedClientIDs) > 20 {
		v.add(field+".allowed_client_ids", "must hold at most 20 ids")
	}
	seen := map[string]bool{}
	for i, id := range r.AllowedClientIDs {
		f := fmt.Sprintf("%s.allowed_client_ids[%d]", field, i)
		v.text(f, id, true, 256)
		if seen[id] {
			v.add(f, "%q is listed twice", id)
		}
		seen[id] = true
	}
	cred.Issuer, cred.Subject, cred.Audience = r.Issuer, r.Subject, r.Audience
	cred.AllowedClientIDs = nonNil(r.AllowedClientIDs)
	cred.RequireAppToken = r.RequireAppToken
}

func clipText(s string) string {
	if len(s) > 96 {
		return s[:96] + "…"
	}
	return s
}

// rotatable refuses to rotate a federated agent: its credentials are not secrets Lanyard
// issues, they are added and removed one by one.
func rotatable(a *store.Agent) error {
	if a.CredentialType == store.CredentialFederated {
		return &ConflictError{Detail: "a federated agent's credentials are not rotated: add the new federated credential, then remove the old one (POST/DELETE /v1/agents/{id}/federation/credentials)"}
	}
	return nil
}

// federationStore is what adding and removing federated credentials needs.
type federationStore interface {
	AddCredential(ctx context.Context, agentID string, c *store.Credential) error
	DeleteCredential(ctx context.Context, agentID, credentialID string) error
}

func (s *Service) federationStore() (federationStore, error) {
	fs, ok := s.st.(federationStore)
	if !ok {
		return nil, errors.New("lifecycle: the store does not support federated credentials")
	}
	return fs, nil
}

// AddFederatedCredential adds a federated credential to the agent (any credential type:
// like an Entra app registration, an agent may hold keys and federated identities).
func (s *Service) AddFederatedCredential(ctx context.Context, actor, id string, req FederatedCredentialRequest) (*Agent, error) {
	fs, err := s.federationStore()
	if err != nil {
		return nil, err
	}
	now := s.opts.Now().UTC()
	cred := &store.Credential{ID: newID("crd_"), AgentID: id, Type: store.CredentialFederated, State: store.CredentialActive, CreatedAt: now}
	v := &validator{}
	v.federated("", &req, s.trust, cred)
	for i := range v.fields {
		v.fields[i].Field = trimDot(v.fields[i].Field)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	a, err := s.st.GetAgent(ctx, id)
	if err != nil {
		return nil, s.wrap("add a federated credential to", id, err)
	}
	if a.Status == store.StatusRevoked || a.Status == store.StatusDecommissioned {
		return nil, &TransitionError{Action: "add a federated credential to", From: a.Status}
	}
	creds, err := s.st.ListCredentials(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: credentials of %s: %w", id, err)
	}
	n := 0
	for _, c := range creds {
		if c.Type == store.CredentialFederated {
			n++
		}
	}
	if n >= MaxFederatedCredentials {
		return nil, &ConflictError{Detail: fmt.Sprintf("the agent already has %d federated credentials, the most allowed", n)}
	}
	if err := fs.AddCredential(ctx, id, cred); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, &ConflictError{Detail: "the agent already has a federated credential with this issuer, subject and audience", Err: err}
		}
		return nil, s.wrap("add a federated credential to", id, err)
	}
	if err := s.record(ctx, actor, a, audit.Event{Type: "credential.federated_added", Data: map[string]any{
		"credential_id": cred.ID, "issuer": cred.Issuer, "subject": cred.Subject, "audience": cred.Audience,
		"allowed_client_ids": []string(cred.AllowedClientIDs), "require_app_token": cred.RequireAppToken,
	}}); err != nil {
		return nil, err
	}
	s.changed(a)
	return s.Get(ctx, id)
}

// RemoveFederatedCredential removes one federated credential. A federated agent keeps
// at least one: remove the agent's last credential by decommissioning it.
func (s *Service) RemoveFederatedCredential(ctx context.Context, actor, id, credentialID string) (*Agent, error) {
	fs, err := s.federationStore()
	if err != nil {
		return nil, err
	}
	a, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var target *store.Credential
	n := 0
	for i, c := range a.Credentials {
		if c.Type == store.CredentialFederated {
			n++
			if c.ID == credentialID {
				target = &a.Credentials[i]
			}
		}
	}
	if target == nil {
		return nil, fmt.Errorf("lifecycle: agent %s has no federated credential %q: %w", id, credentialID, store.ErrNotFound)
	}
	if a.CredentialType == store.CredentialFederated && n == 1 {
		return nil, &ConflictError{Detail: "this is the federated agent's last credential; add another first, or decommission the agent"}
	}
	if err := fs.DeleteCredential(ctx, id, credentialID); err != nil {
		return nil, s.wrap("remove a federated credential of", id, err)
	}
	if err := s.record(ctx, actor, &a.Agent, audit.Event{Type: "credential.federated_removed", Data: map[string]any{
		"credential_id": target.ID, "issuer": target.Issuer, "subject": target.Subject, "audience": target.Audience,
	}}); err != nil {
		return nil, err
	}
	s.changed(&a.Agent)
	return s.Get(ctx, id)
}

func trimDot(f string) string {
	if len(f) > 0 && f[0] == '.' {
		return f[1:]
	}
	return f
}
