package oauth

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/lanyardhq/lanyard/internal/federation"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/protocol"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Federation verifies tokens of trusted external issuers (package federation).
type Federation interface {
	Trusted(issuer string) bool
	Verify(ctx context.Context, raw string, now time.Time) (*federation.Claims, error)
}

// SetFederation sets the verifier of external tokens (federated credentials). Call it
// before serving.
func (p *Provider) SetFederation(f Federation) { p.deps.Federation = f }

// authFederated is the audit log's name of authentication with a federated credential.
const authFederated = "federated"

// maxEntraTokenTTL is the longest lifetime of a token for Entra ID's federation
// audience: Entra accepts longer ones, Lanyard promises at most an hour.
const maxEntraTokenTTL = time.Hour

func isURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}

// authenticateFederated authenticates the agent named by the request's client_id with a
// token from a trusted external issuer that matches one of its federated credentials.
// The token is verified (issuer, alg allow-list, key, time, Entra's tenant and version),
// matched (subject, audience, idtyp, azp/appid) and recorded in the replay cache.
func (p *Provider) authenticateFederated(ctx context.Context, form url.Values, raw, iss string) (*authResult, *protocol.Error) {
	if p.deps.Federation == nil || !p.deps.Federation.Trusted(iss) {
		return nil, protocol.InvalidClient("client assertion issuer %q is not a trusted federation issuer", clip(iss)).WithReason("issuer_not_trusted")
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		return nil, protocol.InvalidClient("client_id is required with a token from an external issuer: it names the agent").WithReason("no_client_id")
	}
	c, perr := p.lookup(ctx, clientID)
	if perr != nil {
		return nil, perr
	}
	if !slices.ContainsFunc(c.federated, func(cr store.Credential) bool { return cr.Issuer == iss }) {
		return nil, protocol.InvalidClient("the agent has no federated credential for issuer %s", iss).WithReason("federated_not_registered")
	}
	now := p.now()
	claims, err := p.deps.Federation.Verify(ctx, raw, now)
	if err != nil {
		return nil, federationError(err)
	}
	cred, err := federation.Match(claims, c.federated)
	if err != nil {
		return nil, federationError(err)
	}
	// Tokens issued before this server started are accepted: an external token cannot
	// be re-signed on demand (managed identity tokens are cached for hours), so the
	// replay window after a restart is the token's remaining lifetime.
	iat := p.replay.started
	if claims.IssuedAt.After(iat) {
		iat = claims.IssuedAt
	}
	key := c.agent.ClientID + "\x00" + claims.Issuer + "\x00" + claims.ID
	if p.replay.Seen(key, iat, claims.Expiry.Add(p.opts.Leeway), now) {
		return nil, protocol.InvalidClient("this external token was already used; present a fresh token").WithReason("assertion_replayed")
	}
	return &authResult{client: c, method: authFederated, jti: claims.ID, federated: cred}, nil
}

func federationError(err error) *protocol.Error {
	var fe *federation.Error
	if errors.As(err, &fe) {
		return protocol.InvalidClient("%s", fe.Detail).WithReason(fe.Reason).WithCause(fe.Cause)
	}
	return protocol.ServerError(err)
}

// entraAllowed reports whether res is Entra ID's federation audience and the agent may
// have tokens for it.
func entraAllowed(a *store.Agent, res string) bool {
	return res == lifecycle.EntraAudience && a.EntraFederation
}

// entraToken applies Entra ID's rules to a token for its federation audience: the only
// audience of the token (Entra matches aud exactly), RS256, at most an hour. It returns
// the algorithm to sign with, "" when the token is not for Entra.
func entraToken(ar fosite.AccessRequester, ttl *time.Duration) (string, *protocol.Error) {
	aud := ar.GetGrantedAudience()
	if !slices.Contains(aud, lifecycle.EntraAudience) {
		return "", nil
	}
	if len(aud) > 1 {
		return "", protocol.InvalidTarget("resource %s must be requested alone: Entra ID requires it to be the token's only audience", lifecycle.EntraAudience).WithReason("entra_audience_alone")
	}
	*ttl = min(*ttl, maxEntraTokenTTL)
	return "RS256", nil
}
