// Package oauth is Lanyard's OAuth 2.0 authorization server: the client_credentials
// grant (composed from fosite), client authentication (private_key_jwt per RFC 7523,
// client_secret_basic, client_secret_post), RFC 9068 JWT access tokens, RFC 7662
// introspection, RFC 7009 revocation, RFC 8414 / OIDC discovery and the JWKS.
//
// Access tokens are self-contained JWTs and are not stored: a resource server can
// verify them offline against the JWKS. Revocation is a deny-list of jti values, and
// introspection also checks the agent's current status, so suspending an agent makes
// all its tokens inactive at once.
package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ory/fosite"
	foauth2 "github.com/ory/fosite/handler/oauth2"
	fjwt "github.com/ory/fosite/token/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/protocol"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Store is what the provider reads and writes.
type Store interface {
	GetAgentByClientID(ctx context.Context, clientID string) (*store.Agent, error)
	GetAgent(ctx context.Context, id string) (*store.Agent, error)
	ListCredentials(ctx context.Context, agentID string) ([]store.Credential, error)
	ListAttestations(ctx context.Context, agentID string, limit int) ([]store.AttestationResult, error)
	RevokeToken(ctx context.Context, t store.RevokedToken) error
	IsTokenRevoked(ctx context.Context, jti string) (bool, error)
	ListRevocations(ctx context.Context, now time.Time) ([]store.RevokedToken, error)
}

// Keys signs access tokens and verifies Lanyard's own tokens.
type Keys interface {
	Sign(alg, typ string, payload []byte) (string, error)
	Verify(token string) (payload []byte, typ string, err error)
	JWKS() []byte
}

// Auditor takes audit events: Enqueue on the issuance hot path (group-committed),
// Record where the caller must know the event is durable.
type Auditor interface {
	Enqueue(e audit.Event) error
	Record(ctx context.Context, e audit.Event) error
}

// AdminChecker reports whether a bearer token is a valid admin token.
type AdminChecker interface {
	CheckAdminToken(ctx context.Context, token string) bool
}

// Options configure the provider.
type Options struct {
	// Issuer is the iss of every token and the base of the endpoint URLs.
	Issuer string
	// DefaultAudience is the aud of tokens requested without a resource.
	DefaultAudience string
	// MaxTokenTTL caps every token's lifetime.
	MaxTokenTTL time.Duration
	// ClientCacheTTL bounds how long another replica's change can go unseen while no
	// change feed is live. Default 5s.
	ClientCacheTTL time.Duration
	// ClientCacheLiveTTL is how long a client stays cached while the change feed is
	// live (which invalidates it on any change): a backstop. Default 10m.
	ClientCacheLiveTTL time.Duration
	// ClientCacheSize bounds the client cache, in agents. Default 50,000 (about 60 MB).
	ClientCacheSize int
	// Leeway tolerates clock skew on client assertions. Default 30s.
	Leeway time.Duration
	Now    func() time.Time
	Logger *slog.Logger
	// Registerer receives the provider's metrics; nil means none are registered.
	Registerer prometheus.Registerer
}

// Deps are the provider's collaborators.
type Deps struct {
	Store  Store
	Keys   Keys
	Audit  Auditor
	Hasher *lifecycle.SecretHasher
	Admin  AdminChecker
	// Federation verifies tokens of trusted external issuers; nil trusts none.
	Federation Federation
}

// Provider serves the OAuth 2.0 endpoints.
type Provider struct {
	opts     Options
	deps     Deps
	hasher   *lifecycle.SecretHasher
	clients  *clientCache
	replay   *replayCache
	fosite   *fosite.Fosite
	strategy *foauth2.DefaultJWTStrategy
	log      *slog.Logger
	metrics  *metrics
	now      func() time.Time

	// live is true while a change feed is live and the revocations are loaded: the
	// provider may then answer status and revocation checks from memory (changes.go).
	live    atomic.Bool
	liveMu  sync.Mutex // serialises feed state changes; guards feedUp
	feedUp  bool
	revoked revokedSet

	tokenURL, introspectURL, revokeURL string
}

// New builds a Provider.
func New(d Deps, o Options) *Provider {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ClientCacheTTL == 0 {
		o.ClientCacheTTL = 5 * time.Second
	}
	if o.ClientCacheLiveTTL == 0 {
		o.ClientCacheLiveTTL = 10 * time.Minute
	}
	if o.ClientCacheSize == 0 {
		o.ClientCacheSize = 50000
	}
	if o.Leeway == 0 {
		o.Leeway = 30 * time.Second
	}
	if o.DefaultAudience == "" {
		o.DefaultAudience = o.Issuer
	}
	if o.MaxTokenTTL == 0 {
		o.MaxTokenTTL = time.Hour
	}
	p := &Provider{
		opts: o, deps: d, hasher: d.Hasher, log: o.Logger, now: o.Now,
		replay:        newReplayCache(o.Now()),
		metrics:       newMetrics(o.Registerer),
		tokenURL:      o.Issuer + "/oauth2/token",
		introspectURL: o.Issuer + "/oauth2/introspect",
		revokeURL:     o.Issuer + "/oauth2/revoke",
	}
	p.clients = newClientCache(d.Store, cacheOptions{ttl: o.ClientCacheTTL, liveTTL: o.ClientCacheLiveTTL,
		max: o.ClientCacheSize, live: p.live.Load, now: o.Now})
	cfg := &fosite.Config{
		AccessTokenIssuer: o.Issuer,
		TokenURL:          p.tokenURL,
		// RFC 9068 §2.2.3: scope is a space-separated string, not fosite's scp list.
		JWTScopeClaimKey:         fjwt.JWTScopeFieldString,
		AccessTokenLifespan:      5 * time.Minute,
		ScopeStrategy:            fosite.ExactScopeStrategy,
		AudienceMatchingStrategy: fosite.ExactAudienceMatchingStrategy,
		// Client authentication is ours: fosite checks aud only against the token URL
		// and has no replay cache or lifetime limit.
		ClientAuthenticationStrategy: p.fositeClientAuth,
	}
	cfg.TokenEndpointHandlers = fosite.TokenEndpointHandlers{&grantHandler{p: p}}
	p.fosite = &fosite.Fosite{Config: cfg}
	p.strategy = &foauth2.DefaultJWTStrategy{Signer: &signer{keys: d.Keys}, Config: cfg}
	return p
}

// Invalidate drops cached state of agent a; lifecycle.Service.OnChange calls it.
func (p *Provider) Invalidate(a *store.Agent) { p.clients.invalidate(a.ClientID) }

// InvalidateAgent drops cached state of the agent with this id (its client id is its
// id); attest.Service.OnResult calls it after each verdict.
func (p *Provider) InvalidateAgent(agentID string) { p.clients.invalidate(agentID) }

// TokenURL is the token endpoint's URL.
func (p *Provider) TokenURL() string { return p.tokenURL }

// fositeClientAuth adapts authenticate to fosite's hook. It carries the authenticated
// result to the grant handler through the returned client.
func (p *Provider) fositeClientAuth(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	res, perr := p.authenticate(ctx, r, form, []string{p.tokenURL})
	if perr != nil {
		return nil, perr
	}
	if st, ok := ctx.Value(authStateKey{}).(*authState); ok {
		st.res = res
	}
	return res.client, nil
}

type authStateKey struct{}

// authState collects what a token request learnt, for the audit event and metrics.
type authState struct{ res *authResult }

// Token serves POST /oauth2/token.
func (p *Provider) Token(w http.ResponseWriter, r *http.Request) {
	start := p.now()
	st := &authState{}
	ctx := context.WithValue(r.Context(), authStateKey{}, st)
	r = r.WithContext(ctx)

	if r.Method != http.MethodPost {
		p.refuse(w, r, st, protocol.InvalidRequest("the token endpoint accepts POST only").WithReason("method"))
		return
	}
	if err := r.ParseForm(); err != nil {
		p.refuse(w, r, st, formError(err))
		return
	}
	if len(r.URL.RawQuery) > 0 {
		// RFC 6749 §3.2: parameters travel in the body; a query string suggests a
		// misconfigured client that may leak credentials into logs.
		p.refuse(w, r, st, protocol.InvalidRequest("token request parameters must be sent in the body, not the URL").WithReason("query_parameters"))
		return
	}
	gts := r.PostForm["grant_type"]
	switch {
	case len(gts) == 0 || gts[0] == "":
		p.refuse(w, r, st, protocol.InvalidRequest("grant_type is missing").WithReason("no_grant_type"))
		return
	case len(gts) > 1:
		p.refuse(w, r, st, protocol.InvalidRequest("parameter grant_type is repeated").WithReason("repeated_parameter"))
		return
	case gts[0] != protocol.GrantClientCredentials:
		p.refuse(w, r, st, protocol.UnsupportedGrantType("grant_type %q is not supported; use client_credentials", gts[0]).WithReason("unsupported_grant_type"))
		return
	}
	if len(r.PostForm["scope"]) > 1 {
		p.refuse(w, r, st, protocol.InvalidRequest("parameter scope is repeated").WithReason("repeated_parameter"))
		return
	}

	sess := &foauth2.JWTSession{}
	ar, err := p.fosite.NewAccessRequest(ctx, r, sess)
	if err != nil {
		p.refuse(w, r, st, toProtocolError(err))
		return
	}
	resp, err := p.fosite.NewAccessResponse(ctx, ar)
	if err != nil {
		p.refuse(w, r, st, toProtocolError(err))
		return
	}
	c := ar.GetClient().(*client)
	claims := sess.JWTClaims
	data := map[string]any{
		"jti": claims.JTI, "scope": []string(ar.GetGrantedScopes()), "aud": []string(ar.GetGrantedAudience()),
		"exp": claims.ExpiresAt.Unix(), "auth_method": st.res.method, "assertion_jti": st.res.jti,
	}
	if fc := st.res.federated; fc != nil {
		// Which external identity obtained the token.
		data["federated_credential_id"], data["federated_issuer"], data["federated_subject"] = fc.ID, fc.Issuer, fc.Subject
	}
	p.enqueue(audit.Event{
		Type: "token.issued", Actor: "agent:" + c.agent.ID, AgentID: c.agent.ID, Namespace: c.agent.Namespace,
		Outcome: "success", RequestID: requestid.From(ctx), Data: data,
	})
	p.metrics.issued.WithLabelValues(c.agent.TokenAlg).Inc()
	p.metrics.latency.WithLabelValues("token").Observe(p.now().Sub(start).Seconds())
	p.fosite.WriteAccessResponse(ctx, w, ar, resp)
}

// enqueue hands e to the audit log. It can fail only once the log has shut down, when
// the HTTP server is draining; the event is then lost, which must not go unnoticed.
func (p *Provider) enqueue(e audit.Event) {
	if err := p.deps.Audit.Enqueue(e); err != nil {
		p.log.Error("audit event lost", "type", e.Type, "agent_id", e.AgentID, "request_id", e.RequestID, "err", err)
	}
}

// refuse writes an OAuth error and records the refusal.
func (p *Provider) refuse(w http.ResponseWriter, r *http.Request, st *authState, e *protocol.Error) {
	reason := e.Reason
	if reason == "" {
		reason = e.Code
	}
	ev := audit.Event{Type: "token.refused", Actor: "anonymous", Outcome: "failure", Reason: e.Description,
		RequestID: requestid.From(r.Context()), Data: map[string]any{"error": e.Code, "check": reason}}
	if st != nil && st.res != nil {
		a := st.res.client.agent
		ev.Actor, ev.AgentID, ev.Namespace = "agent:"+a.ID, a.ID, a.Namespace
	} else if id := claimedClientID(r); id != "" {
		// Unauthenticated: record what the caller claimed, marked as a claim.
		ev.Data["claimed_client_id"] = id
	}
	p.enqueue(ev)
	p.metrics.refused.WithLabelValues(reason).Inc()
	if e.Code == protocol.ErrServerError {
		p.log.ErrorContext(r.Context(), "token request failed", "err", e)
	} else {
		p.log.DebugContext(r.Context(), "token refused", "error", e.Code, "check", reason, "description", e.Description)
	}
	writeError(w, r, e)
}

// claimedClientID returns the client id a request claims, without trusting it.
func claimedClientID(r *http.Request) string {
	id := r.PostForm.Get("client_id")
	if id == "" {
		if u, _, ok := r.BasicAuth(); ok {
			id = u
		}
	}
	if len(id) > 128 {
		id = id[:128]
	}
	return id
}

// formError explains why a request body could not be parsed as a form.
func formError(err error) *protocol.Error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		e := protocol.InvalidRequest("the request body exceeds %d bytes", mbe.Limit).WithReason("body_too_large")
		e.Status = http.StatusRequestEntityTooLarge
		return e
	}
	return protocol.InvalidRequest("the body is not a valid form: %v", err).WithReason("malformed_body")
}

// toProtocolError maps whatever fosite returned to our error type.
func toProtocolError(err error) *protocol.Error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	var fe *fosite.RFC6749Error
	if errors.As(err, &fe) {
		if fe.ErrorField == fosite.ErrServerError.ErrorField {
			return protocol.ServerError(err)
		}
		desc := fe.DescriptionField
		if fe.HintField != "" {
			desc = fe.HintField
		}
		return &protocol.Error{Code: fe.ErrorField, Description: desc, Status: fe.CodeField, Reason: fe.ErrorField, Cause: err}
	}
	return protocol.ServerError(err)
}

// writeError writes e as an RFC 6749 §5.2 error response.
func writeError(w http.ResponseWriter, r *http.Request, e *protocol.Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	status := e.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	if status == http.StatusUnauthorized {
		// RFC 6749 §5.2: a 401 answers with the scheme the client may use.
		if _, _, ok := r.BasicAuth(); ok {
			h.Set("WWW-Authenticate", `Basic realm="lanyard"`)
		}
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
}
