package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

func newFederated(id, agentID, subject string, created time.Time) *store.Credential {
	return &store.Credential{
		ID: id, AgentID: agentID, Type: store.CredentialFederated, State: store.CredentialActive,
		Issuer: "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0", Subject: subject,
		Audience: "api://lanyard", AllowedClientIDs: store.StringList{"c0ffee00-0000-0000-0000-000000000001"},
		RequireAppToken: true, CreatedAt: created,
	}
}

// testFederatedCredentials: federated credentials are added and removed one at a
// time, survive rotation of the agent's other credential, and one agent cannot hold
// the same (issuer, subject, audience) twice.
func testFederatedCredentials(t *testing.T, s store.Store) {
	a := mustCreateAgent(t, s, newAgent("agt_1", "prod", "federated"))
	c1 := newCredential("crd_agt_1", "agt_1", t0)
	f1 := newFederated("crd_f1", "agt_1", "sub-1", t0.Add(time.Minute))
	if err := s.AddCredential(ctx(t), "agt_1", f1); err != nil {
		t.Fatalf("AddCredential: %v", err)
	}
	f2 := newFederated("crd_f2", "agt_1", "sub-2", t0.Add(2*time.Minute))
	f2.AllowedClientIDs, f2.RequireAppToken = store.StringList{}, false
	if err := s.AddCredential(ctx(t), "agt_1", f2); err != nil {
		t.Fatalf("AddCredential: %v", err)
	}
	if got := mustGetAgent(t, s, "agt_1").Generation; got != a.Generation+2 {
		t.Errorf("Generation after two adds = %d, want %d", got, a.Generation+2)
	}
	checkCredentials(t, s, "agt_1", f2, f1, c1)

	dup := newFederated("crd_f3", "agt_1", "sub-1", t0)
	if err := s.AddCredential(ctx(t), "agt_1", dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("AddCredential of a duplicate federated identity: %v, want ErrConflict", err)
	}
	// Another agent may trust the same identity.
	mustCreateAgent(t, s, newAgent("agt_2", "prod", "other"))
	if err := s.AddCredential(ctx(t), "agt_2", newFederated("crd_f4", "agt_2", "sub-1", t0)); err != nil {
		t.Errorf("AddCredential of the same identity to another agent: %v", err)
	}
	if err := s.AddCredential(ctx(t), "agt_missing", newFederated("crd_f5", "agt_missing", "x", t0)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddCredential to a missing agent: %v, want ErrNotFound", err)
	}

	// Rotation retires the private_key_jwt credential only.
	grace := t0.Add(time.Hour)
	c2 := newCredential("crd_2", "agt_1", t0.Add(3*time.Minute))
	if err := s.RotateCredential(ctx(t), "agt_1", c2, grace); err != nil {
		t.Fatalf("RotateCredential: %v", err)
	}
	c1.State, c1.ExpiresAt = store.CredentialRetiring, &grace
	checkCredentials(t, s, "agt_1", c2, f2, f1, c1)

	// The rotation scheduler never sees federated credentials.
	if rs, ok := s.(store.Rotations); ok {
		due, err := rs.ActiveCredentials(ctx(t), "", 0, false)
		if err != nil {
			t.Fatalf("ActiveCredentials: %v", err)
		}
		for _, d := range due {
			if d.Credential.Type == store.CredentialFederated {
				t.Errorf("ActiveCredentials returned federated credential %s", d.Credential.ID)
			}
		}
	}
	if err := s.DeleteCredential(ctx(t), "agt_1", "crd_f1"); err != nil {
		t.Fatalf("DeleteCredential: %v", err)
	}
	checkCredentials(t, s, "agt_1", c2, f2, c1)
	if err := s.DeleteCredential(ctx(t), "agt_1", "crd_f1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteCredential twice: %v, want ErrNotFound", err)
	}
	// A credential of another agent is not found through this one.
	if err := s.DeleteCredential(ctx(t), "agt_1", "crd_f4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteCredential of another agent's credential: %v, want ErrNotFound", err)
	}
}

func testFederationIssuers(t *testing.T, s store.Store) {
	list, err := s.ListFederationIssuers(ctx(t))
	if err != nil || len(list) != 0 {
		t.Fatalf("ListFederationIssuers on an empty store = %v, %v", list, err)
	}
	entra := &store.FederationIssuer{Issuer: "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/", Kind: "entra",
		Algs: store.StringList{"RS256"}, CreatedAt: t0}
	gh := &store.FederationIssuer{Issuer: "https://token.actions.githubusercontent.com", Kind: "oidc",
		Algs: store.StringList{"RS256", "ES256"}, JWKSURL: "https://token.actions.githubusercontent.com/.well-known/jwks", CreatedAt: t0.Add(time.Second)}
	for _, i := range []*store.FederationIssuer{entra, gh} {
		if err := s.CreateFederationIssuer(ctx(t), i); err != nil {
			t.Fatalf("CreateFederationIssuer: %v", err)
		}
	}
	dup := *gh
	if err := s.CreateFederationIssuer(ctx(t), &dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateFederationIssuer twice: %v, want ErrConflict", err)
	}
	list, err = s.ListFederationIssuers(ctx(t))
	if err != nil || len(list) != 2 {
		t.Fatalf("ListFederationIssuers = %v, %v; want 2", list, err)
	}
	checkSame(t, "ListFederationIssuers[0]", &list[0], entra)
	checkSame(t, "ListFederationIssuers[1]", &list[1], gh)
	checkUTC(t, "ListFederationIssuers", &list[0])
	if err := s.DeleteFederationIssuer(ctx(t), entra.Issuer); err != nil {
		t.Fatalf("DeleteFederationIssuer: %v", err)
	}
	if err := s.DeleteFederationIssuer(ctx(t), entra.Issuer); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteFederationIssuer twice: %v, want ErrNotFound", err)
	}
	if list, _ := s.ListFederationIssuers(ctx(t)); len(list) != 1 || list[0].Issuer != gh.Issuer {
		t.Errorf("after delete: %v", list)
	}
}
