package vault_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/vault/api"

	"github.com/lanyardhq/lanyard/internal/secrets/vault"
	"github.com/lanyardhq/lanyard/internal/secrets/vault/vaulttest"
)

// TestKubernetesAuth logs in with the Kubernetes auth method of the real Vault server.
// Kubernetes itself cannot run here, so its one API Vault calls — TokenReview, which
// vouches for the pod's service account token — is a fake that accepts exactly the
// token this test minted; everything on Lanyard's and Vault's side is real.
func TestKubernetesAuth(t *testing.T) {
	srv := vaulttest.Require(t)
	ctx := t.Context()

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	claims := map[string]any{
		"iss":                                    "kubernetes/serviceaccount",
		"sub":                                    "system:serviceaccount:lanyard:lanyard",
		"kubernetes.io/serviceaccount/namespace": "lanyard",
		"kubernetes.io/serviceaccount/service-account.name": "lanyard",
		"kubernetes.io/serviceaccount/service-account.uid":  "0b5e6a5c-uid",
	}
	saJWT, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	// The same claims under another signature: well formed, but not a token the
	// cluster issued, so TokenReview refuses it.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherSigner, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: otherKey}, nil)
	forged, _ := josejwt.Signed(otherSigner).Claims(claims).Serialize()
	var reviews atomic.Int32
	k8s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
			http.NotFound(w, r)
			return
		}
		var req struct {
			Spec struct {
				Token string `json:"token"`
			} `json:"spec"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		reviews.Add(1)
		status := map[string]any{"authenticated": false}
		if req.Spec.Token == saJWT {
			status = map[string]any{"authenticated": true, "user": map[string]any{"username": "system:serviceaccount:lanyard:lanyard", "uid": "0b5e6a5c-uid"}}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
	}))
	defer k8s.Close()

	c := srv.Client()
	if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, "kubernetes", &api.EnableAuthOptions{Type: "kubernetes"}); err != nil && !strings.Contains(err.Error(), "already in use") {
		t.Fatal(err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/kubernetes/config", map[string]any{
		"kubernetes_host": k8s.URL, "disable_local_ca_jwt": true,
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.PutPolicy(ctx, "lanyard", policyHCL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/kubernetes/role/lanyard", map[string]any{
		"bound_service_account_names": "lanyard", "bound_service_account_namespaces": "lanyard",
		"token_policies": "lanyard", "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "token"), filepath.Join(dir, "other")
	os.WriteFile(good, []byte(saJWT), 0o600)
	os.WriteFile(bad, []byte(forged), 0o600)

	b, err := vault.New(ctx, vault.Config{Address: srv.Addr, Auth: vault.AuthKubernetes, K8sRole: "lanyard", K8sTokenFile: good})
	if err != nil {
		t.Fatalf("Kubernetes login: %v", err)
	}
	if reviews.Load() == 0 {
		t.Fatal("Vault did not ask Kubernetes to review the token")
	}
	if _, err := b.Put(ctx, "lanyard/k8s-probe", map[string]string{"k": "v"}); err != nil {
		t.Fatalf("Put under the Kubernetes login's policy: %v", err)
	}
	b.Destroy(ctx, "lanyard/k8s-probe")

	before := reviews.Load()
	if _, err := vault.New(ctx, vault.Config{Address: srv.Addr, Auth: vault.AuthKubernetes, K8sRole: "lanyard", K8sTokenFile: bad}); err == nil {
		t.Fatal("login with a token Kubernetes does not vouch for succeeded")
	}
	if reviews.Load() == before {
		t.Error("the forged token was refused before TokenReview; the test proves less than it says")
	}
	if _, err := vault.New(ctx, vault.Config{Address: srv.Addr, Auth: vault.AuthKubernetes, K8sRole: "nope", K8sTokenFile: good}); err == nil {
		t.Fatal("login with an unknown role succeeded")
	}
}
