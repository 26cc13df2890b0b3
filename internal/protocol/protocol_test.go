package protocol

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestConstructors(t *testing.T) {
	tests := []struct {
		name   string
		err    *Error
		code   string
		status int
	}{
		{"InvalidRequest", InvalidRequest("x %d", 1), ErrInvalidRequest, http.StatusBadRequest},
		{"InvalidClient", InvalidClient("x %d", 1), ErrInvalidClient, http.StatusUnauthorized},
		{"UnauthorizedClient", UnauthorizedClient("x %d", 1), ErrUnauthorizedClient, http.StatusBadRequest},
		{"UnsupportedGrantType", UnsupportedGrantType("x %d", 1), ErrUnsupportedGrantType, http.StatusBadRequest},
		{"InvalidScope", InvalidScope("x %d", 1), ErrInvalidScope, http.StatusBadRequest},
		{"InvalidTarget", InvalidTarget("x %d", 1), ErrInvalidTarget, http.StatusBadRequest},
		{"UnsupportedTokenType", UnsupportedTokenType("x %d", 1), ErrUnsupportedTokenType, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err.Code != tt.code || tt.err.Status != tt.status || tt.err.Description != "x 1" {
				t.Errorf("got %+v, want code %s status %d description %q", tt.err, tt.code, tt.status, "x 1")
			}
			if got := tt.err.Error(); got != tt.code+": x 1" {
				t.Errorf("Error() = %q", got)
			}
		})
	}
}

func TestDescriptionIsNotAFormatString(t *testing.T) {
	// Callers pass client-controlled values as arguments; a % in them stays literal.
	e := InvalidClient("kid %q matches no key", "%s%n%d")
	if e.Description != `kid "%s%n%d" matches no key` {
		t.Errorf("Description = %q", e.Description)
	}
}

func TestWithReasonAndCauseCopy(t *testing.T) {
	base := InvalidClient("assertion expired")
	cause := errors.New("exp 1700000000 < now")
	r := base.WithReason("assertion_expired")
	c := r.WithCause(cause)
	if base.Reason != "" || base.Cause != nil {
		t.Errorf("WithReason/WithCause mutated the original: %+v", base)
	}
	if r.Reason != "assertion_expired" || r.Cause != nil {
		t.Errorf("WithReason result %+v", r)
	}
	if c.Reason != "assertion_expired" || !errors.Is(c, cause) || r == c {
		t.Errorf("WithCause result %+v", c)
	}
	if !strings.Contains(c.Error(), cause.Error()) {
		t.Errorf("Error() = %q; the logs should see the cause", c.Error())
	}
}

func TestServerErrorHidesCause(t *testing.T) {
	cause := errors.New("pq: connection to 10.0.0.5 refused")
	e := ServerError(cause)
	if e.Code != ErrServerError || e.Status != http.StatusInternalServerError {
		t.Errorf("ServerError = %+v", e)
	}
	if strings.Contains(e.Description, "10.0.0.5") {
		t.Errorf("Description %q leaks the cause", e.Description)
	}
	if !errors.Is(e, cause) {
		t.Error("ServerError does not wrap its cause")
	}
	// Each call returns a fresh value.
	if ServerError(cause) == e {
		t.Error("ServerError returned a shared value")
	}
}
