// Package protocol is the OAuth 2.0 vocabulary Lanyard speaks: error codes, grant types,
// client authentication methods, parameter and claim names, and the one error type every
// OAuth endpoint writes. It imports nothing from the server.
package protocol

import (
	"fmt"
	"net/http"
)

// Error codes (RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 8707 §2).
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidClient        = "invalid_client"
	ErrInvalidGrant         = "invalid_grant"
	ErrUnauthorizedClient   = "unauthorized_client"
	ErrUnsupportedGrantType = "unsupported_grant_type"
	ErrInvalidScope         = "invalid_scope"
	ErrInvalidTarget        = "invalid_target"
	ErrUnsupportedTokenType = "unsupported_token_type"
	ErrServerError          = "server_error"
)

// Grant types and client authentication methods.
const (
	GrantClientCredentials = "client_credentials"

	AuthPrivateKeyJWT     = "private_key_jwt"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"

	// AssertionTypeJWTBearer is the client_assertion_type of RFC 7523 §2.2.
	AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Claim and header names beyond the registered JWT claims.
const (
	ClaimClientID  = "client_id"
	ClaimScope     = "scope"
	ClaimNamespace = "namespace"
	ClaimAtt       = "att"

	// TypAccessToken is the JWT typ header of RFC 9068 access tokens.
	TypAccessToken = "at+jwt"
)

// Error is an OAuth error response: Code and Description go to the client, Cause stays
// in the logs. Build one with the constructors; each returns a fresh value.
type Error struct {
	Code        string
	Description string
	Status      int
	// Reason is a short, stable slug naming the failed check (e.g. "assertion_expired")
	// for metrics labels and audit queries. It is not sent to the client.
	Reason string
	Cause  error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Cause)
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Cause }

// WithReason returns a copy of e with the given reason slug.
func (e *Error) WithReason(reason string) *Error {
	c := *e
	c.Reason = reason
	return &c
}

// WithCause returns a copy of e carrying cause for the logs.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.Cause = cause
	return &c
}

func newErr(code string, status int, format string, args ...any) *Error {
	return &Error{Code: code, Status: status, Description: fmt.Sprintf(format, args...)}
}

// InvalidRequest reports a malformed request.
func InvalidRequest(format string, args ...any) *Error {
	return newErr(ErrInvalidRequest, http.StatusBadRequest, format, args...)
}

// InvalidClient reports failed client authentication (401, RFC 6749 §5.2).
func InvalidClient(format string, args ...any) *Error {
	return newErr(ErrInvalidClient, http.StatusUnauthorized, format, args...)
}

// InvalidGrant reports a grant the client may not use now (RFC 6749 §5.2), e.g. missing
// or failed attestation.
func InvalidGrant(format string, args ...any) *Error {
	return newErr(ErrInvalidGrant, http.StatusBadRequest, format, args...)
}

// UnauthorizedClient reports an authenticated client that may not use this grant now.
func UnauthorizedClient(format string, args ...any) *Error {
	return newErr(ErrUnauthorizedClient, http.StatusBadRequest, format, args...)
}

// UnsupportedGrantType reports a grant_type Lanyard does not implement.
func UnsupportedGrantType(format string, args ...any) *Error {
	return newErr(ErrUnsupportedGrantType, http.StatusBadRequest, format, args...)
}

// InvalidScope reports a requested scope outside what the client may have.
func InvalidScope(format string, args ...any) *Error {
	return newErr(ErrInvalidScope, http.StatusBadRequest, format, args...)
}

// InvalidTarget reports a requested resource outside what the client may address (RFC 8707).
func InvalidTarget(format string, args ...any) *Error {
	return newErr(ErrInvalidTarget, http.StatusBadRequest, format, args...)
}

// UnsupportedTokenType reports a token type the revocation endpoint cannot revoke (RFC 7009).
func UnsupportedTokenType(format string, args ...any) *Error {
	return newErr(ErrUnsupportedTokenType, http.StatusBadRequest, format, args...)
}

// ServerError hides an internal failure from the client; cause goes to the logs.
func ServerError(cause error) *Error {
	return &Error{Code: ErrServerError, Status: http.StatusInternalServerError,
		Description: "the server could not complete the request", Cause: cause}
}
