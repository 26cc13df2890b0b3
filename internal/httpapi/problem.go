package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type     string                 `json:"type"`
	Title    string                 `json:"title"`
	Status   int                    `json:"status"`
	Detail   string                 `json:"detail,omitempty"`
	Instance string                 `json:"instance,omitempty"`
	Errors   []lifecycle.FieldError `json:"errors,omitempty"`
	// cause is logged, never sent.
	cause error
}

func (p *Problem) Error() string {
	if p.cause != nil {
		return fmt.Sprintf("%d %s: %s: %v", p.Status, p.Title, p.Detail, p.cause)
	}
	return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
}

func (p *Problem) Unwrap() error { return p.cause }

// problemType names a problem type: a URN, stable across deployments.
func problemType(slug string) string { return "urn:lanyard:problem:" + slug }

func newProblem(status int, slug, detail string) *Problem {
	return &Problem{Type: problemType(slug), Title: http.StatusText(status), Status: status, Detail: detail}
}

// toProblem maps a domain error to the problem the client sees. Unknown errors become
// a 500 whose detail says nothing about the internals.
func toProblem(err error) *Problem {
	var (
		p   *Problem
		ve  *lifecycle.ValidationError
		te  *lifecycle.TransitionError
		ce  *lifecycle.ConflictError
		ue  *lifecycle.UnavailableError
		he  *echo.HTTPError
		mbe *http.MaxBytesError
	)
	if ap := authzProblem(err); ap != nil {
		return ap
	}
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &ve):
		pr := newProblem(http.StatusBadRequest, "validation", "the request has invalid fields")
		pr.Errors = ve.Fields
		return pr
	case errors.As(err, &te):
		return newProblem(http.StatusConflict, "invalid-transition", strings.TrimPrefix(te.Error(), "lifecycle: "))
	case errors.As(err, &ce):
		return newProblem(http.StatusConflict, "conflict", ce.Detail)
	case errors.As(err, &ue):
		pr := newProblem(http.StatusServiceUnavailable, "secrets-unavailable", "the secrets backend is unavailable; retry later")
		pr.cause = err
		return pr
	case errors.Is(err, store.ErrNotFound):
		return newProblem(http.StatusNotFound, "not-found", "no such resource")
	case errors.As(err, &mbe):
		return newProblem(http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("the request body exceeds %d bytes", mbe.Limit))
	case errors.As(err, &he):
		detail := fmt.Sprint(he.Message)
		if he.Code == http.StatusNotFound {
			detail = "no such endpoint"
		}
		if he.Code == http.StatusMethodNotAllowed {
			detail = "method not allowed on this endpoint"
		}
		return newProblem(he.Code, strings.ToLower(strings.ReplaceAll(http.StatusText(he.Code), " ", "-")), detail)
	}
	pr := newProblem(http.StatusInternalServerError, "internal", "the server could not complete the request; the request id identifies it in the logs")
	pr.cause = err
	return pr
}

// errorHandler renders every error leaving an echo handler as a problem document.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := toProblem(err)
		if p.Status >= 500 {
			log.ErrorContext(c.Request().Context(), "request failed", "err", err, "path", c.Request().URL.Path)
		}
		if p.Instance == "" {
			p.Instance = c.Request().URL.Path
		}
		if p.Status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="lanyard"`)
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		b, _ := json.Marshal(p)
		_ = c.Blob(p.Status, "application/problem+json", b)
	}
}

// decodeStrict decodes exactly one JSON object from the request body into v, refusing
// unknown fields, trailing data and other media types.
func decodeStrict(c echo.Context, v any) error {
	r := c.Request()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", "send the body as application/json")
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return toProblem(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return newProblem(http.StatusBadRequest, "malformed-json", "the request body is empty; send a JSON object")
	}
	return decodeJSON(body, v)
}

// decodeJSON is decodeStrict's parser, separate so the fuzz test can drive it.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var (
			se *json.SyntaxError
			te *json.UnmarshalTypeError
		)
		switch {
		case errors.As(err, &se):
			return newProblem(http.StatusBadRequest, "malformed-json", fmt.Sprintf("the body is not valid JSON (at byte %d)", se.Offset))
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "(root)"
			}
			p := newProblem(http.StatusBadRequest, "validation", "the request has invalid fields")
			p.Errors = []lifecycle.FieldError{{Field: field, Detail: fmt.Sprintf("must be %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)}}
			return p
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			p := newProblem(http.StatusBadRequest, "validation", "the request has invalid fields")
			p.Errors = []lifecycle.FieldError{{Field: name, Detail: "is not a known field"}}
			return p
		case errors.Is(err, io.ErrUnexpectedEOF):
			return newProblem(http.StatusBadRequest, "malformed-json", "the body ends in the middle of a JSON value")
		}
		return newProblem(http.StatusBadRequest, "malformed-json", "the body is not a valid JSON object")
	}
	// dec.More is false before a stray ] or }, so read one more token: only the end
	// of the body may follow the value.
	if _, err := dec.Token(); err != io.EOF {
		return newProblem(http.StatusBadRequest, "malformed-json", "the body holds more than one JSON value")
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "a number"
}
