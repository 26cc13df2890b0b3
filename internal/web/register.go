package web

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// registerForm holds the registration form's values, to show them again with errors.
type registerForm struct {
	Name, Namespace, Owner, Purpose, Risk string
	Pending                               bool
	Credential                            string // generate | jwks | client_secret
	KeyAlg                                string
	JWKS                                  string
	Measurements                          string
	Scopes, Resources                     string
	MaxTokenTTL, AttestationTTL, TokenAlg string
}

type registerView struct {
	F          registerForm
	Errors     []lifecycle.FieldError
	Risks      []string
	Namespaces []string // the namespaces a scoped admin may register into
}

func (h *Handler) registerForm(c echo.Context) error {
	return h.showRegister(c, http.StatusOK, registerForm{Risk: "medium", Credential: "generate", KeyAlg: "ES256",
		TokenAlg: "ES256", MaxTokenTTL: "5m", AttestationTTL: "10m"}, nil)
}

func (h *Handler) showRegister(c echo.Context, status int, f registerForm, errs []lifecycle.FieldError) error {
	_, ns := authz.FromContext(c.Request().Context()).Scope(authz.RegisterAgents)
	return h.render(c, status, "register", h.newView(c, "Register an agent", "register",
		registerView{F: f, Errors: errs, Risks: lifecycle.RiskLevels, Namespaces: ns}))
}

type registeredView struct {
	A          *lifecycle.Agent
	Secret     string
	PrivateJWK string
}

// maxUpload bounds each uploaded file (the request body limit applies as well).
const maxUpload = 48 << 10

// formText returns the named textarea, or the uploaded file of the same purpose when
// one was chosen (the file wins).
func formText(c echo.Context, field, fileField string) (string, error) {
	if fh, err := c.FormFile(fileField); err == nil && fh.Size > 0 {
		if fh.Size > maxUpload {
			return "", fmt.Errorf("the file is larger than %d bytes", maxUpload)
		}
		f, err := fh.Open()
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxUpload+1))
		if err != nil {
			return "", err
		}
		return string(b), nil
	} else if err != nil && !errors.Is(err, http.ErrMissingFile) && !errors.Is(err, http.ErrNotMultipart) {
		return "", err
	}
	return strings.TrimSpace(c.FormValue(field)), nil
}

func (h *Handler) register(c echo.Context) error {
	ctx := c.Request().Context()
	p := authz.FromContext(ctx)
	f := registerForm{
		Name: strings.TrimSpace(c.FormValue("name")), Namespace: strings.TrimSpace(c.FormValue("namespace")),
		Owner: strings.TrimSpace(c.FormValue("owner")), Purpose: strings.TrimSpace(strings.ReplaceAll(c.FormValue("purpose"), "\r\n", "\n")),
		Risk: c.FormValue("risk_level"), Pending: c.FormValue("pending") == "on", Credential: c.FormValue("credential"),
		KeyAlg: c.FormValue("key_alg"), Scopes: c.FormValue("scopes"), Resources: c.FormValue("resources"),
		MaxTokenTTL: strings.TrimSpace(c.FormValue("max_token_ttl")), AttestationTTL: strings.TrimSpace(c.FormValue("attestation_ttl")),
		TokenAlg: c.FormValue("token_alg"),
	}
	var errs []lifecycle.FieldError
	bad := func(field, detail string) { errs = append(errs, lifecycle.FieldError{Field: field, Detail: detail}) }
	var err error
	if f.Measurements, err = formText(c, "measurements", "measurements_file"); err != nil {
		bad("measurements", err.Error())
	}
	if f.JWKS, err = formText(c, "jwks", "jwks_file"); err != nil {
		bad("credential.jwks", err.Error())
	}
	if f.Namespace != "" && !p.Can(authz.RegisterAgents, f.Namespace) {
		return &authz.DeniedError{Principal: p.Name, Permission: authz.RegisterAgents, Namespace: f.Namespace}
	}
	req := lifecycle.RegisterRequest{Name: f.Name, Namespace: f.Namespace, Owner: f.Owner, Purpose: f.Purpose,
		RiskLevel: f.Risk, Pending: f.Pending, TokenAlg: f.TokenAlg, MaxTokenTTL: f.MaxTokenTTL, AttestationTTL: f.AttestationTTL,
		AllowedScopes: splitList(f.Scopes), AllowedResources: splitList(f.Resources)}
	if f.Measurements != "" {
		var ref lifecycle.Reference
		dec := json.NewDecoder(strings.NewReader(f.Measurements))
		if err := dec.Decode(&ref); err != nil {
			bad("reference", "is not the JSON that `lanyard measure --json` prints (or a reference document): "+err.Error())
		} else {
			req.Reference = &ref
		}
	}
	var privateJWK string
	switch f.Credential {
	case "client_secret":
		req.Credential = &lifecycle.CredentialRequest{Type: store.CredentialClientSecret}
	case "generate", "jwks":
		jwks, priv, kerrs := readKeyChoice(c, f.KeyAlg)
		errs = append(errs, kerrs...)
		req.Credential = &lifecycle.CredentialRequest{Type: store.CredentialPrivateKeyJWT, JWKS: jwks}
		privateJWK = priv
	default:
		bad("credential", "choose how the agent authenticates")
	}
	if len(errs) > 0 {
		return h.showRegister(c, http.StatusBadRequest, f, errs)
	}
	res, err := h.d.Lifecycle.Register(ctx, p.Actor(), req)
	if err != nil {
		if fe := fieldErrors(err); fe != nil {
			return h.showRegister(c, http.StatusBadRequest, f, fe)
		}
		var ce *lifecycle.ConflictError
		if errors.As(err, &ce) {
			return h.showRegister(c, http.StatusConflict, f, []lifecycle.FieldError{{Field: "name", Detail: ce.Detail}})
		}
		return err
	}
	// The secret or private key appears in this response only (no-store): Lanyard keeps
	// a hash of the secret and only the public key.
	return h.render(c, http.StatusCreated, "registered", h.newView(c, "Agent registered", "register",
		registeredView{A: res.Agent, Secret: res.ClientSecret, PrivateJWK: privateJWK}))
}

// readKeyChoice reads the key part of a form: "generate" makes a key pair here and
// returns its private JWK for showing once; "jwks" takes the pasted or uploaded set.
func readKeyChoice(c echo.Context, alg string) (jwks json.RawMessage, privateJWK string, errs []lifecycle.FieldError) {
	src := c.FormValue("credential")
	if src == "" {
		src = c.FormValue("key_source")
	}
	switch src {
	case "generate":
		if alg == "" {
			alg = "ES256"
		}
		pub, priv, err := generateKey(alg)
		if err != nil {
			return nil, "", []lifecycle.FieldError{{Field: "key_alg", Detail: err.Error()}}
		}
		return pub, priv, nil
	case "jwks":
		text, err := formText(c, "jwks", "jwks_file")
		if err != nil {
			return nil, "", []lifecycle.FieldError{{Field: "credential.jwks", Detail: err.Error()}}
		}
		if text == "" {
			return nil, "", []lifecycle.FieldError{{Field: "credential.jwks", Detail: "paste or upload the agent's public JWK set"}}
		}
		return json.RawMessage(text), "", nil
	}
	return nil, "", []lifecycle.FieldError{{Field: "key_source", Detail: "choose to generate a key pair or to provide a JWK set"}}
}

// generateKey makes an agent key pair. The kid is the RFC 7638 thumbprint, as
// `lanyard keygen` does, and the private JWK has the form `lanyard token --key` reads.
func generateKey(alg string) (publicSet json.RawMessage, privateJWK string, err error) {
	var priv crypto.Signer
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, "", fmt.Errorf("must be ES256 or RS256")
	}
	if err != nil {
		return nil, "", err
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: alg, Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, "", err
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, "", err
	}
	pj, err := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: pub.KeyID, Algorithm: alg, Use: "sig"})
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	_ = json.Indent(&buf, pj, "", "  ")
	return set, buf.String(), nil
}

// splitList splits scopes or resources written one per line or separated by spaces or
// commas.
func splitList(s string) []string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
	return slices.Compact(fields)
}

func fieldErrors(err error) []lifecycle.FieldError {
	var ve *lifecycle.ValidationError
	if errors.As(err, &ve) {
		return ve.Fields
	}
	return nil
}
