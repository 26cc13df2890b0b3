package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// tpmHandler serves TPM attestation key enrolment by credential activation
// (admin-authenticated: enrolling a host's AK is a platform team's act).
type tpmHandler struct {
	svc *attest.Enrolments
}

// Mount mounts the enrolment endpoints on the admin group.
func (h *tpmHandler) Mount(g *echo.Group) {
	g.POST("/tpm/enrolments", h.start, requires(authz.RegisterAgents))
	g.POST("/tpm/enrolments/:id/activation", h.finish, requires(authz.RegisterAgents))
	g.GET("/tpm/attestation-keys/:name", h.get, requires(authz.ViewAgents))
}

// Largest accepted encodings: a TPM2B_PUBLIC is at most a few hundred bytes (RSA 4096:
// about 600); EK certificates are a few kilobytes.
const (
	maxTPMPublic = 1024
	maxEKCert    = 16 << 10
)

// enrolRequest is the body of POST /v1/tpm/enrolments.
type enrolRequest struct {
	EKPublic      string `json:"ek_public"`      // base64 TPM2B_PUBLIC
	EKCertificate string `json:"ek_certificate"` // base64 DER, optional
	AKPublic      string `json:"ak_public"`      // base64 TPM2B_PUBLIC
}

// decode validates the request's encodings and returns every problem at once.
func (r enrolRequest) decode() (attest.EnrolRequest, error) {
	var out attest.EnrolRequest
	var fields []lifecycle.FieldError
	dec := func(field, s string, required bool, max int) []byte {
		if s == "" {
			if required {
				fields = append(fields, lifecycle.FieldError{Field: field, Detail: "is required"})
			}
			return nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		switch {
		case err != nil:
			fields = append(fields, lifecycle.FieldError{Field: field, Detail: "must be standard base64"})
		case len(b) > max:
			fields = append(fields, lifecycle.FieldError{Field: field, Detail: "is too large"})
		}
		return b
	}
	out.EKPublic = dec("ek_public", r.EKPublic, true, maxTPMPublic)
	out.EKCertificate = dec("ek_certificate", r.EKCertificate, false, maxEKCert)
	out.AKPublic = dec("ak_public", r.AKPublic, true, maxTPMPublic)
	if len(fields) > 0 {
		p := newProblem(http.StatusBadRequest, "validation", "the request has invalid fields")
		p.Errors = fields
		return out, p
	}
	return out, nil
}

// activationRequest is the body of POST /v1/tpm/enrolments/{id}/activation.
type activationRequest struct {
	Secret string `json:"secret"` // base64 of what TPM2_ActivateCredential returned
}

func (r activationRequest) decode() ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(r.Secret)
	if r.Secret == "" || err != nil || len(b) > 64 {
		p := newProblem(http.StatusBadRequest, "validation", "the request has invalid fields")
		p.Errors = []lifecycle.FieldError{{Field: "secret", Detail: "must be the standard base64 of the activated secret"}}
		return nil, p
	}
	return b, nil
}

// caller binds a pending enrolment to the credential that started it: SHA-256 of the
// bearer token (adminOnly has already checked it).
func caller(c echo.Context) string {
	h := c.Request().Header.Get("Authorization")
	sum := sha256.Sum256([]byte(strings.TrimSpace(h[min(len(h), 7):])))
	return hex.EncodeToString(sum[:])
}

func (h *tpmHandler) start(c echo.Context) error {
	var req enrolRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	er, err := req.decode()
	if err != nil {
		return err
	}
	ch, err := h.svc.Start(c.Request().Context(), caller(c), actor(c), er)
	if err != nil {
		return enrolmentProblem(err)
	}
	c.Response().Header().Set("Location", "/v1/tpm/enrolments/"+ch.ID)
	return c.JSON(http.StatusCreated, map[string]any{
		"id":               ch.ID,
		"ak_name":          ch.AKName,
		"credential_blob":  base64.StdEncoding.EncodeToString(ch.CredentialBlob),
		"encrypted_secret": base64.StdEncoding.EncodeToString(ch.EncryptedSecret),
		"expires_at":       ch.ExpiresAt.Format(time.RFC3339),
	})
}

func (h *tpmHandler) finish(c echo.Context) error {
	var req activationRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	secret, err := req.decode()
	if err != nil {
		return err
	}
	rec, err := h.svc.Finish(c.Request().Context(), caller(c), actor(c), c.Param("id"), secret)
	if err != nil {
		return enrolmentProblem(err)
	}
	return c.JSON(http.StatusOK, renderEnrolment(rec))
}

func (h *tpmHandler) get(c echo.Context) error {
	rec, err := h.svc.Get(c.Request().Context(), c.Param("name"))
	if errors.Is(err, store.ErrNotFound) {
		return newProblem(http.StatusNotFound, "not-found", "no enrolled attestation key has this name")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, renderEnrolment(rec))
}

func renderEnrolment(r *store.TPMEnrolment) map[string]any {
	return map[string]any{
		"ak_name":        r.AKName,
		"ak_public":      base64.StdEncoding.EncodeToString(r.AKPublic),
		"ek_public_hash": r.EKPublicHash,
		"ek_cert_status": r.EKCertStatus,
		"enrolled_by":    r.EnrolledBy,
		"enrolled_at":    r.EnrolledAt,
	}
}

func enrolmentProblem(err error) error {
	var ee *attest.EnrolmentError
	if !errors.As(err, &ee) {
		return err
	}
	status := http.StatusBadRequest
	switch ee.Kind {
	case attest.EnrolEKCertRefused, attest.EnrolActivationFailed:
		status = http.StatusForbidden
	case attest.EnrolNotFound:
		status = http.StatusNotFound
	case attest.EnrolExpired:
		status = http.StatusGone
	}
	return newProblem(status, ee.Kind, ee.Detail)
}
