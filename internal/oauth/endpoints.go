package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/protocol"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/store"
)

// accessClaims are the claims of a Lanyard access token.
type accessClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	ClientID  string           `json:"client_id"`
	Audience  josejwt.Audience `json:"aud"`
	Scope     string           `json:"scope,omitempty"`
	IssuedAt  int64            `json:"iat"`
	NotBefore int64            `json:"nbf"`
	Expiry    int64            `json:"exp"`
	ID        string           `json:"jti"`
	Namespace string           `json:"namespace"`
	Att       json.RawMessage  `json:"att,omitempty"`
}

// errInactive explains (to logs only) why a token is not active.
type errInactive string

func (e errInactive) Error() string { return "oauth: token inactive: " + string(e) }

// verifyAccessToken checks signature, type, issuer and time of one of our tokens. It
// does not consult the database.
func (p *Provider) verifyAccessToken(token string) (*accessClaims, error) {
	if len(token) > 16<<10 {
		return nil, errInactive("too large")
	}
	payload, typ, err := p.deps.Keys.Verify(token)
	if err != nil {
		return nil, errInactive("signature: " + err.Error())
	}
	if typ != protocol.TypAccessToken {
		return nil, errInactive("typ is not at+jwt")
	}
	var c accessClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, errInactive("claims malformed")
	}
	now := p.now().Unix()
	leeway := int64(p.opts.Leeway / time.Second)
	switch {
	case c.Issuer != p.opts.Issuer:
		return nil, errInactive("issuer")
	case c.Expiry <= now:
		return nil, errInactive("expired")
	case c.NotBefore > now+leeway:
		return nil, errInactive("not yet valid")
	case c.ID == "" || c.Subject == "":
		return nil, errInactive("jti or sub missing")
	}
	return &c, nil
}

// tokenState checks what the token cannot say: revocation and the agent's status. A
// suspension or revocation on any replica takes effect at once: with a live change feed
// both are answered from memory that the feed keeps current (changes.go); without one
// they are read fresh from the database.
func (p *Provider) tokenState(ctx context.Context, c *accessClaims) error {
	if p.live.Load() {
		if p.revoked.has(c.ID) {
			return errInactive("revoked")
		}
		cl, err := p.clients.get(ctx, c.ClientID)
		if errors.Is(err, errUnknownClient) {
			return errInactive("agent unknown")
		}
		if err != nil {
			return err
		}
		if cl.agent.ID != c.Subject {
			return errInactive("agent unknown")
		}
		return agentState(&cl.agent, c)
	}
	revoked, err := p.deps.Store.IsTokenRevoked(ctx, c.ID)
	if err != nil {
		return err
	}
	if revoked {
		return errInactive("revoked")
	}
	a, err := p.deps.Store.GetAgent(ctx, c.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return errInactive("agent unknown")
	}
	if err != nil {
		return err
	}
	return agentState(a, c)
}

// agentState reports whether agent a's status allows its token c.
func agentState(a *store.Agent, c *accessClaims) error {
	if a.Status != store.StatusActive {
		return errInactive("agent " + a.Status)
	}
	if a.TokensNotBefore != nil && c.IssuedAt <= a.TokensNotBefore.Unix() {
		// iat has second precision: a token from the cut-off's second counts as issued
		// before it (fail closed).
		return errInactive("issued before the agent's tokens were cut off")
	}
	return nil
}

// caller is who called introspection or revocation.
type caller struct {
	admin bool
	agent *store.Agent
}

func (c caller) actor() string {
	if c.admin {
		return "admin"
	}
	return "agent:" + c.agent.ID
}

// authorizeCaller authenticates an admin bearer token or an agent (as at the token
// endpoint, with endpointURL as an accepted assertion aud). Agents must be active.
func (p *Provider) authorizeCaller(r *http.Request, endpointURL string) (caller, *protocol.Error) {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		if p.deps.Admin != nil && p.deps.Admin.CheckAdminToken(r.Context(), strings.TrimSpace(h[7:])) {
			return caller{admin: true}, nil
		}
		return caller{}, protocol.InvalidClient("bearer token is not a valid admin token").WithReason("bad_admin_token")
	}
	res, perr := p.authenticate(r.Context(), r, r.PostForm, []string{endpointURL})
	if perr != nil {
		return caller{}, perr
	}
	if res.client.agent.Status != store.StatusActive {
		return caller{}, protocol.InvalidClient("agent is %s", res.client.agent.Status).WithReason("agent_" + res.client.agent.Status)
	}
	return caller{agent: &res.client.agent}, nil
}

func (p *Provider) parsePost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		writeError(w, r, protocol.InvalidRequest("this endpoint accepts POST only"))
		return false
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, r, formError(err))
		return false
	}
	if len(r.PostForm["token"]) > 1 {
		writeError(w, r, protocol.InvalidRequest("parameter token is repeated"))
		return false
	}
	return true
}

// Introspect serves POST /oauth2/introspect (RFC 7662). Callers are admins or agents
// registered with can_introspect (resource servers).
func (p *Provider) Introspect(w http.ResponseWriter, r *http.Request) {
	if !p.parsePost(w, r) {
		return
	}
	who, ok := p.requireCaller(w, r, p.introspectURL, "introspection.refused")
	if !ok {
		return
	}
	if !who.admin && !who.agent.CanIntrospect {
		p.refuseCaller(w, r, "introspection.refused", &protocol.Error{Code: protocol.ErrUnauthorizedClient, Status: http.StatusForbidden,
			Description: "agent may not introspect tokens (can_introspect is false)", Reason: "not_allowed"})
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeError(w, r, protocol.InvalidRequest("token is missing"))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	c, err := p.verifyAccessToken(token)
	if err == nil {
		err = p.tokenState(r.Context(), c)
	}
	var inactive errInactive
	switch {
	case errors.As(err, &inactive):
		p.metrics.intro.WithLabelValues("false").Inc()
		p.log.DebugContext(r.Context(), "introspection: inactive", "why", string(inactive))
		writeJSON(w, http.StatusOK, map[string]bool{"active": false})
		return
	case err != nil:
		p.log.ErrorContext(r.Context(), "introspection failed", "err", err)
		writeError(w, r, protocol.ServerError(err))
		return
	}
	p.metrics.intro.WithLabelValues("true").Inc()
	resp := map[string]any{
		"active": true, "iss": c.Issuer, "sub": c.Subject, "client_id": c.ClientID,
		"aud": []string(c.Audience), "iat": c.IssuedAt, "nbf": c.NotBefore, "exp": c.Expiry,
		"jti": c.ID, "token_type": "Bearer", "namespace": c.Namespace,
	}
	if c.Scope != "" {
		resp["scope"] = c.Scope
	}
	if len(c.Att) > 0 {
		resp["att"] = c.Att
	}
	writeJSON(w, http.StatusOK, resp)
}

// Revoke serves POST /oauth2/revoke (RFC 7009). An agent may revoke its own tokens; an
// admin any token. Invalid and expired tokens are answered with 200, as §2.2 requires.
func (p *Provider) Revoke(w http.ResponseWriter, r *http.Request) {
	if !p.parsePost(w, r) {
		return
	}
	who, ok := p.requireCaller(w, r, p.revokeURL, "token.revoke_refused")
	if !ok {
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeError(w, r, protocol.InvalidRequest("token is missing"))
		return
	}
	if hint := r.PostForm.Get("token_type_hint"); hint != "" && hint != "access_token" && hint != "refresh_token" {
		writeError(w, r, protocol.UnsupportedTokenType("token_type_hint %q is not supported", hint))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	c, err := p.verifyAccessToken(token)
	if err != nil {
		// Not ours, malformed or already expired: nothing to revoke.
		w.WriteHeader(http.StatusOK)
		return
	}
	if !who.admin && c.ClientID != who.agent.ClientID {
		writeError(w, r, protocol.UnauthorizedClient("the token was not issued to this client").WithReason("not_owner"))
		return
	}
	if err := p.deps.Store.RevokeToken(r.Context(), store.RevokedToken{
		JTI: c.ID, AgentID: c.Subject, ExpiresAt: time.Unix(c.Expiry, 0).UTC(), RevokedAt: p.now().UTC(),
	}); err != nil {
		writeError(w, r, protocol.ServerError(err))
		return
	}
	// This replica sees its own revocation at once; the feed tells the others.
	p.revoked.add(c.ID, time.Unix(c.Expiry, 0))
	if err := p.deps.Audit.Record(r.Context(), audit.Event{
		Type: "token.revoked", Actor: who.actor(), AgentID: c.Subject, Namespace: c.Namespace, Outcome: "success",
		RequestID: requestid.From(r.Context()), Data: map[string]any{"jti": c.ID, "exp": c.Expiry},
	}); err != nil {
		writeError(w, r, protocol.ServerError(err))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// requireCaller authorizes the caller of an endpoint, or answers the refusal (audited
// as refusedType) and reports false.
func (p *Provider) requireCaller(w http.ResponseWriter, r *http.Request, endpointURL, refusedType string) (caller, bool) {
	who, perr := p.authorizeCaller(r, endpointURL)
	if perr != nil {
		p.refuseCaller(w, r, refusedType, perr)
		return caller{}, false
	}
	return who, true
}

// refuseCaller audits and writes a refusal of an introspection or revocation caller.
func (p *Provider) refuseCaller(w http.ResponseWriter, r *http.Request, typ string, e *protocol.Error) {
	ev := audit.Event{Type: typ, Actor: "anonymous", Outcome: "failure", Reason: e.Description,
		RequestID: requestid.From(r.Context()), Data: map[string]any{"error": e.Code, "check": e.Reason}}
	if id := claimedClientID(r); id != "" {
		ev.Data["claimed_client_id"] = id
	}
	p.enqueue(ev)
	writeError(w, r, e)
}

// Discovery serves the RFC 8414 and OpenID Connect discovery documents: they list
// exactly what this server supports.
func (p *Provider) Discovery(w http.ResponseWriter, r *http.Request) {
	authMethods := []string{protocol.AuthPrivateKeyJWT, protocol.AuthClientSecretBasic, protocol.AuthClientSecretPost}
	algs := []string{"ES256", "RS256", "PS256"}
	doc := map[string]any{
		"issuer":                                p.opts.Issuer,
		"token_endpoint":                        p.tokenURL,
		"jwks_uri":                              p.opts.Issuer + "/oauth2/jwks",
		"introspection_endpoint":                p.introspectURL,
		"revocation_endpoint":                   p.revokeURL,
		"grant_types_supported":                 []string{protocol.GrantClientCredentials},
		"response_types_supported":              []string{},
		"token_endpoint_auth_methods_supported": authMethods,
		"token_endpoint_auth_signing_alg_values_supported":         algs,
		"introspection_endpoint_auth_methods_supported":            append([]string{"bearer"}, authMethods...),
		"introspection_endpoint_auth_signing_alg_values_supported": algs,
		"revocation_endpoint_auth_methods_supported":               append([]string{"bearer"}, authMethods...),
		"revocation_endpoint_auth_signing_alg_values_supported":    algs,
		"subject_types_supported":                                  []string{"public"},
		"id_token_signing_alg_values_supported":                    []string{"ES256", "RS256"},
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, doc)
}

// JWKS serves GET /oauth2/jwks.
func (p *Provider) JWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short caching: a key is published before it signs, but not long before.
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(p.deps.Keys.JWKS())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
