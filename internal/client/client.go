// Package client is a small typed Go client for Lanyard's HTTP API: the admin API under
// /v1 (agents, lifecycle, credential rotation, audit) and, on the agent side, discovery
// and the OAuth 2.0 token endpoint (client_credentials with private_key_jwt or a client
// secret).
//
// Contract:
//   - A Client is safe for concurrent use; it holds no per-call state.
//   - Every /v1 error response is returned as a *Problem (RFC 9457), also when the body
//     is not problem+json (a proxy's HTML page, say): the Problem then carries the status
//     and the start of the body as Detail. Test with errors.As.
//   - Every token endpoint error response is returned as a *OAuthError (RFC 6749 §5.2).
//   - Responses the caller may want verbatim (for `--json` output) keep the exact bytes
//     the server sent in their Raw field, so fields this client does not know yet are
//     not lost.
//   - The client never logs, and no error it returns contains the admin token, a client
//     secret or a client assertion.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxResponseBytes caps how much of a response body the client reads. The largest
// legitimate answer is a page of agents or audit events, far below this.
const maxResponseBytes = 16 << 20

// DefaultTimeout is the overall per-request timeout of the http.Client that New builds
// when it is given none.
const DefaultTimeout = 30 * time.Second

// Client talks to one Lanyard server.
type Client struct {
	baseURL    *url.URL
	adminToken string
	http       *http.Client
}

// New returns a client for the Lanyard server at baseURL (scheme and host, optionally a
// path prefix; e.g. "http://localhost:8080"). adminToken is sent as a bearer token on
// /v1 admin calls; it may be empty for a client used only for discovery and tokens.
// httpClient may be nil, in which case a client with DefaultTimeout is used.
//
// New panics if baseURL is not an absolute http(s) URL: that is a programming or
// configuration error the caller should have caught with ParseBaseURL.
func New(baseURL, adminToken string, httpClient *http.Client) *Client {
	u, err := ParseBaseURL(baseURL)
	if err != nil {
		panic(err)
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: DefaultTimeout}
	}
	return &Client{baseURL: u, adminToken: adminToken, http: httpClient}
}

// ParseBaseURL checks that s is an absolute http or https URL without query or fragment
// and returns it with any trailing slash removed from its path.
func ParseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("client: server URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("client: server URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: server URL %q: must not have a query or fragment", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// BaseURL returns the server URL the client was built with.
func (c *Client) BaseURL() string { return c.baseURL.String() }

// endpoint joins the base URL with path (which starts with "/") and query.
func (c *Client) endpoint(path string, q url.Values) string {
	u := *c.baseURL
	u.Path += path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// FieldError is one validation failure reported in a Problem.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// Problem is an RFC 9457 problem document returned by the /v1 API.
type Problem struct {
	Type     string       `json:"type,omitempty"`
	Title    string       `json:"title,omitempty"`
	Status   int          `json:"status,omitempty"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
}

// Error renders the problem for a person: the status and title, the detail, then one
// line per field error.
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString("server answered ")
	if p.Status != 0 {
		fmt.Fprintf(&b, "%d", p.Status)
	}
	title := p.Title
	if title == "" && p.Status != 0 {
		title = http.StatusText(p.Status)
	}
	if title != "" {
		if p.Status != 0 {
			b.WriteString(" ")
		}
		b.WriteString(title)
	}
	if p.Detail != "" && p.Detail != p.Title {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	for _, fe := range p.Errors {
		b.WriteString("\n  - ")
		if fe.Field != "" {
			b.WriteString(fe.Field)
			b.WriteString(": ")
		}
		b.WriteString(fe.Detail)
	}
	return b.String()
}

// IsStatus reports whether err is a *Problem (or *OAuthError) with the given HTTP status.
func IsStatus(err error, status int) bool {
	var p *Problem
	if errors.As(err, &p) {
		return p.Status == status
	}
	var o *OAuthError
	if errors.As(err, &o) {
		return o.StatusCode == status
	}
	return false
}

// doJSON performs an admin call: method path with an optional JSON body (nil for none),
// decoding a 2xx JSON answer into out (unless out is nil) and anything else into a
// *Problem.
func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("client: encode %s %s request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path, q), rd)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := readBody(resp)
	if err != nil {
		return fmt.Errorf("client: %s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeProblem(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: %s %s: decode %d response: %w (body starts %q)",
			method, path, resp.StatusCode, err, snippet(data))
	}
	return nil
}

func readBody(resp *http.Response) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("response body larger than %d bytes", maxResponseBytes)
	}
	return data, nil
}

// decodeProblem turns a non-2xx /v1 response into a *Problem. A body that is not a
// problem document still yields one, with the HTTP status and the start of the body.
func decodeProblem(resp *http.Response, data []byte) *Problem {
	p := &Problem{}
	if isJSON(resp.Header.Get("Content-Type")) && json.Unmarshal(data, p) == nil &&
		(p.Title != "" || p.Detail != "" || p.Type != "" || len(p.Errors) > 0) {
		if p.Status == 0 {
			p.Status = resp.StatusCode
		}
		return p
	}
	p = &Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
	if s := snippet(data); s != "" {
		p.Detail = s
	}
	return p
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "application/problem+json" || strings.HasSuffix(mt, "+json")
}

// snippet returns the start of a body, trimmed, for error messages.
func snippet(data []byte) string {
	const n = 300
	s := strings.TrimSpace(string(data))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// rawCopy returns a copy of b for a Raw field (json.Unmarshal reuses its input buffer).
func rawCopy(b []byte) json.RawMessage {
	return append(json.RawMessage(nil), b...)
}
