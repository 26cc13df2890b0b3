package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"
	foauth2 "github.com/ory/fosite/handler/oauth2"
	fjwt "github.com/ory/fosite/token/jwt"

	"github.com/lanyardhq/lanyard/internal/protocol"
	"github.com/lanyardhq/lanyard/internal/store"
)

// grantHandler is the client_credentials grant for agents. It replaces fosite's
// ClientCredentialsGrantHandler because agents need more than it offers: RFC 8707
// resource indicators (fosite knows only "audience"), per-agent token lifetimes and
// algorithms, lifecycle-state and attestation gates, and no token storage (our tokens
// are self-contained; revocation is a jti deny-list).
type grantHandler struct{ p *Provider }

var _ fosite.TokenEndpointHandler = (*grantHandler)(nil)

func (h *grantHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

func (h *grantHandler) CanHandleTokenEndpointRequest(_ context.Context, ar fosite.AccessRequester) bool {
	return ar.GetGrantTypes().ExactOne(protocol.GrantClientCredentials)
}

// HandleTokenEndpointRequest decides what the token may carry.
func (h *grantHandler) HandleTokenEndpointRequest(ctx context.Context, ar fosite.AccessRequester) error {
	c, ok := ar.GetClient().(*client)
	if !ok {
		return protocol.ServerError(errors.New("oauth: unexpected client type"))
	}
	a := &c.agent
	switch a.Status {
	case store.StatusActive:
	case store.StatusPending:
		return protocol.InvalidClient("agent is pending activation").WithReason("agent_pending")
	default:
		return protocol.InvalidClient("agent is %s", a.Status).WithReason("agent_" + a.Status)
	}
	now := h.p.now().UTC().Truncate(time.Second)
	var att *store.AttestationResult
	var measured map[string]string
	if c.requiresAttestation {
		var perr *protocol.Error
		if att, measured, perr = h.currentAttestation(ctx, c, now); perr != nil {
			return perr
		}
	}

	for _, s := range ar.GetRequestedScopes() {
		if !slices.Contains(a.AllowedScopes, s) {
			return protocol.InvalidScope("scope %q is not allowed for this agent", s).WithReason("scope_not_allowed")
		}
		ar.GrantScope(s)
	}

	form := ar.GetRequestForm()
	// RFC 8707 resource, repeatable; fosite's "audience" parameter is accepted as a
	// synonym because Hydra's clients send it.
	resources := append(append([]string(nil), form["resource"]...), ar.GetRequestedAudience()...)
	for _, res := range resources {
		if res == "" || !(slices.Contains(a.AllowedResources, res) || entraAllowed(a, res)) {
			return protocol.InvalidTarget("resource %q is not allowed for this agent", res).WithReason("resource_not_allowed")
		}
		if !slices.Contains(ar.GetGrantedAudience(), res) {
			ar.GrantAudience(res)
		}
	}
	if len(ar.GetGrantedAudience()) == 0 {
		ar.GrantAudience(h.p.opts.DefaultAudience)
	}

	ttl := time.Duration(a.MaxTokenTTLSeconds) * time.Second
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	ttl = min(ttl, h.p.opts.MaxTokenTTL)
	alg, perr := entraToken(ar, &ttl)
	if perr != nil {
		return perr
	}
	if alg == "" {
		alg = a.TokenAlg
	}
	exp := now.Add(ttl)
	if att != nil && att.ExpiresAt.Before(exp) {
		// A token never outlives the attestation that allowed it.
		exp = att.ExpiresAt.Truncate(time.Second)
	}

	sess := ar.GetSession().(*foauth2.JWTSession)
	sess.SetExpiresAt(fosite.AccessToken, exp)
	sess.Subject = a.ID
	sess.JWTClaims = &fjwt.JWTClaims{
		Subject:   a.ID,
		JTI:       newJTI(),
		IssuedAt:  now,
		NotBefore: now,
		Extra: map[string]any{
			protocol.ClaimClientID:  a.ClientID,
			protocol.ClaimNamespace: a.Namespace,
		},
	}
	if att != nil {
		m := measured
		sess.JWTClaims.Extra[protocol.ClaimAtt] = map[string]any{
			"id": att.ID, "model": m["model_digest"], "prompt": m["prompt_digest"], "tools": m["tool_manifest_digest"],
			"host": att.Host, "exp": att.ExpiresAt.Unix(),
		}
	}
	sess.JWTHeader = &fjwt.Headers{Extra: map[string]any{"typ": protocol.TypAccessToken, "alg": alg}}
	return nil
}

// currentAttestation returns the agent's current affirming verdict, or the refusal
// that says why there is none. A cached verdict that no longer allows a token is
// re-read once: another replica may have recorded a newer one.
func (h *grantHandler) currentAttestation(ctx context.Context, c *client, now time.Time) (*store.AttestationResult, map[string]string, *protocol.Error) {
	r, measured := c.attestation, c.attMeasured
	if r == nil || r.Status != store.AttestationAffirming || !now.Before(r.ExpiresAt) {
		// c is shared by concurrent requests: read the fresh entry, never write c.
		if fresh, err := h.p.clients.load(ctx, c.agent.ClientID); err == nil {
			r, measured = fresh.attestation, fresh.attMeasured
		}
	}
	switch {
	case r == nil:
		return nil, nil, protocol.InvalidGrant("attestation missing: the agent has reference measurements and no attestation result; attest first (POST /v1/attestations)").WithReason("attestation_missing")
	case r.Status != store.AttestationAffirming:
		return nil, nil, protocol.InvalidGrant("attestation failed: the latest result %s is %s; see GET /v1/agents/%s/attestations", r.ID, r.Status, c.agent.ID).WithReason("attestation_failed")
	case !now.Before(r.ExpiresAt):
		return nil, nil, protocol.InvalidGrant("attestation expired at %s; attest again", r.ExpiresAt.UTC().Format(time.RFC3339)).WithReason("attestation_expired")
	}
	return r, measured, nil
}

// PopulateTokenEndpointResponse signs the token.
func (h *grantHandler) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	token, _, err := h.p.strategy.GenerateAccessToken(ctx, ar)
	if err != nil {
		return protocol.ServerError(err)
	}
	exp := ar.GetSession().GetExpiresAt(fosite.AccessToken)
	resp.SetAccessToken(token)
	resp.SetTokenType("Bearer")
	resp.SetExpiresIn(exp.Sub(h.p.now()).Round(time.Second))
	if s := ar.GetGrantedScopes(); len(s) > 0 {
		resp.SetScopes(s)
	}
	return nil
}

func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// signer adapts Keys to fosite's jwt.Signer. fosite builds the claims; the alg and typ
// come from the header fosite passes through from the session.
type signer struct{ keys Keys }

var _ fjwt.Signer = (*signer)(nil)

func (s *signer) Generate(_ context.Context, claims fjwt.MapClaims, header fjwt.Mapper) (string, string, error) {
	// fosite's Headers.ToMap drops "alg" (it expects the signer to choose), so the
	// agent's algorithm is read from the session's header itself.
	var alg, typ string
	if fh, ok := header.(*fjwt.Headers); ok {
		alg, _ = fh.Extra["alg"].(string)
		typ, _ = fh.Extra["typ"].(string)
	}
	if alg == "" {
		alg = "ES256"
	}
	if typ == "" {
		typ = protocol.TypAccessToken
	}
	// RFC 9068 uses a single string aud when there is one audience.
	if aud, ok := claims["aud"].([]string); ok && len(aud) == 1 {
		claims["aud"] = aud[0]
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", "", err
	}
	tok, err := s.keys.Sign(alg, typ, payload)
	if err != nil {
		return "", "", err
	}
	return tok, tok[strings.LastIndexByte(tok, '.')+1:], nil
}

func (s *signer) Validate(_ context.Context, token string) (string, error) {
	if _, _, err := s.keys.Verify(token); err != nil {
		return "", err
	}
	return token[strings.LastIndexByte(token, '.')+1:], nil
}

func (s *signer) Hash(_ context.Context, in []byte) ([]byte, error) {
	h := sha256.Sum256(in)
	return h[:], nil
}

func (s *signer) Decode(context.Context, string) (*fjwt.Token, error) {
	return nil, errors.New("oauth: decode is not used; tokens are verified with Keys.Verify")
}

func (s *signer) GetSignature(_ context.Context, token string) (string, error) {
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return "", errors.New("oauth: not a compact JWS")
	}
	return token[i+1:], nil
}

func (s *signer) GetSigningMethodLength(context.Context) int { return sha256.Size }
