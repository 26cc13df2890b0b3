package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// TPMEnrolmentRequest starts enrolling a TPM attestation key (POST /v1/tpm/enrolments).
// Byte members travel as standard base64.
type TPMEnrolmentRequest struct {
	EKPublic      []byte `json:"ek_public"`
	EKCertificate []byte `json:"ek_certificate,omitempty"`
	AKPublic      []byte `json:"ak_public"`
}

// TPMEnrolmentChallenge is the credential the TPM must activate.
type TPMEnrolmentChallenge struct {
	ID              string    `json:"id"`
	AKName          string    `json:"ak_name"`
	CredentialBlob  []byte    `json:"credential_blob"`
	EncryptedSecret []byte    `json:"encrypted_secret"`
	ExpiresAt       time.Time `json:"expires_at"`
}

// TPMEnrolment is an enrolled attestation key.
type TPMEnrolment struct {
	AKName       string    `json:"ak_name"`
	AKPublic     []byte    `json:"ak_public"`
	EKPublicHash string    `json:"ek_public_hash"`
	EKCertStatus string    `json:"ek_cert_status"`
	EnrolledBy   string    `json:"enrolled_by"`
	EnrolledAt   time.Time `json:"enrolled_at"`
}

// StartTPMEnrolment sends the EK and AK and returns the credential to activate.
func (c *Client) StartTPMEnrolment(ctx context.Context, req TPMEnrolmentRequest) (*TPMEnrolmentChallenge, error) {
	var out TPMEnrolmentChallenge
	if err := c.doJSON(ctx, http.MethodPost, "/v1/tpm/enrolments", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ActivateTPMEnrolment sends the secret TPM2_ActivateCredential recovered and returns
// the enrolled attestation key.
func (c *Client) ActivateTPMEnrolment(ctx context.Context, id string, secret []byte) (*TPMEnrolment, error) {
	var out TPMEnrolment
	body := map[string][]byte{"secret": secret}
	if err := c.doJSON(ctx, http.MethodPost, "/v1/tpm/enrolments/"+url.PathEscape(id)+"/activation", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
