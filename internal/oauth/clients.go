package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"
	"golang.org/x/sync/singleflight"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// client is an agent as the token endpoint sees it: the agent record plus its usable
// credentials, decoded once and cached. It implements fosite.Client.
type client struct {
	agent store.Agent
	// keys are the public keys of every usable private_key_jwt credential.
	keys []jose.JSONWebKey
	// secrets are the hashes of every usable client secret.
	secrets [][]byte
	// federated are the agent's federated credentials.
	federated []store.Credential
	// validUntil is when the earliest retiring credential stops being usable (the cache
	// entry must be rebuilt then); zero when none is retiring.
	validUntil time.Time
	// requiresAttestation is true when the agent has reference measurements.
	requiresAttestation bool
	// attestation is the agent's latest verdict (when it requires one), and attMeasured
	// its measured digests; nil when there is none.
	attestation *store.AttestationResult
	attMeasured map[string]string
	loadedAt    time.Time
}

var _ fosite.Client = (*client)(nil)

func (c *client) GetID() string                   { return c.agent.ClientID }
func (c *client) GetHashedSecret() []byte         { return nil }
func (c *client) GetRedirectURIs() []string       { return nil }
func (c *client) GetGrantTypes() fosite.Arguments { return fosite.Arguments{"client_credentials"} }
func (c *client) GetResponseTypes() fosite.Arguments {
	return fosite.Arguments{}
}
func (c *client) GetScopes() fosite.Arguments   { return fosite.Arguments(c.agent.AllowedScopes) }
func (c *client) IsPublic() bool                { return false }
func (c *client) GetAudience() fosite.Arguments { return fosite.Arguments(c.agent.AllowedResources) }

// clientStore is what the client cache reads.
type clientStore interface {
	GetAgentByClientID(ctx context.Context, clientID string) (*store.Agent, error)
	ListCredentials(ctx context.Context, agentID string) ([]store.Credential, error)
	ListAttestations(ctx context.Context, agentID string, limit int) ([]store.AttestationResult, error)
}

// clientCache keeps decoded clients in memory: the token endpoint must not hit the
// database on every request. Changes made through this server invalidate entries at
// once (lifecycle.Service.OnChange), and so do other replicas' changes while a change
// feed is live (changes.go); entries also expire after ttl (liveTTL while the feed is
// live) so that another replica's change takes effect within it.
type clientCache struct {
	st clientStore
	cacheOptions

	mu      sync.RWMutex
	entries map[string]*client
	// epoch counts invalidations; a load that raced one does not cache its result.
	epoch uint64
	// stored counts insertions; every sweepEvery-th one drops the entries that have
	// expired, so the map holds the agents seen within about ttl, not every agent
	// ever seen (a million agents would otherwise keep over 1 GB live).
	stored uint64
	group  singleflight.Group
}

type cacheOptions struct {
	ttl, liveTTL time.Duration
	// max bounds the entries (0: unbounded): at it, an insertion first sweeps, then
	// drops an eighth.
	max  int
	live func() bool
	now  func() time.Time
}

// sweepEvery is how many insertions pass between two sweeps of expired entries: a
// sweep walks the map under the write lock, so it runs rarely enough to cost little
// per insertion and often enough that expired entries never dominate the map.
const sweepEvery = 1024

func newClientCache(st clientStore, o cacheOptions) *clientCache {
	if o.live == nil {
		o.live = func() bool { return false }
	}
	return &clientCache{st: st, cacheOptions: o, entries: make(map[string]*client)}
}

// lifetime is how long an entry may be served now.
func (c *clientCache) lifetime() time.Duration {
	if c.live() {
		return c.liveTTL
	}
	return c.ttl
}

// errUnknownClient means no agent has the client id.
var errUnknownClient = errors.New("oauth: unknown client")

func (c *clientCache) get(ctx context.Context, clientID string) (*client, error) {
	now := c.now()
	c.mu.RLock()
	e := c.entries[clientID]
	c.mu.RUnlock()
	if e != nil && now.Sub(e.loadedAt) < c.lifetime() && (e.validUntil.IsZero() || now.Before(e.validUntil)) {
		return e, nil
	}
	v, err, _ := c.group.Do(clientID, func() (any, error) { return c.load(ctx, clientID) })
	if err != nil {
		return nil, err
	}
	return v.(*client), nil
}

func (c *clientCache) load(ctx context.Context, clientID string) (*client, error) {
	c.mu.RLock()
	epoch := c.epoch
	c.mu.RUnlock()
	a, err := c.st.GetAgentByClientID(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownClient
	}
	if err != nil {
		return nil, fmt.Errorf("oauth: load client: %w", err)
	}
	creds, err := c.st.ListCredentials(ctx, a.ID)
	if err != nil {
		return nil, fmt.Errorf("oauth: load credentials: %w", err)
	}
	now := c.now()
	cl := &client{agent: *a, loadedAt: now, requiresAttestation: len(a.Reference) > 0}
	if cl.requiresAttestation {
		list, err := c.st.ListAttestations(ctx, a.ID, 1)
		if err != nil {
			return nil, fmt.Errorf("oauth: load attestation: %w", err)
		}
		if len(list) == 1 {
			cl.attestation = &list[0]
			_ = json.Unmarshal(list[0].Measurements, &cl.attMeasured)
			if cl.validUntil.IsZero() || list[0].ExpiresAt.Before(cl.validUntil) {
				// Rebuild at the verdict's expiry: a newer one may exist by then.
				cl.validUntil = list[0].ExpiresAt
			}
		}
	}
	for _, cr := range creds {
		if cr.State == store.CredentialRetiring {
			if cr.ExpiresAt == nil || !now.Before(*cr.ExpiresAt) {
				continue
			}
			if cl.validUntil.IsZero() || cr.ExpiresAt.Before(cl.validUntil) {
				cl.validUntil = *cr.ExpiresAt
			}
		}
		switch cr.Type {
		case store.CredentialPrivateKeyJWT:
			set, err := lifecycle.ParseJWKS(cr.JWKS)
			if err != nil {
				return nil, fmt.Errorf("oauth: stored JWKS of credential %s: %w", cr.ID, err)
			}
			cl.keys = append(cl.keys, set.Keys...)
		case store.CredentialClientSecret:
			cl.secrets = append(cl.secrets, cr.SecretHash)
		case store.CredentialFederated:
			cl.federated = append(cl.federated, cr)
		}
	}
	c.mu.Lock()
	if c.epoch == epoch {
		if c.stored++; c.stored%sweepEvery == 0 || (c.max > 0 && len(c.entries) >= c.max) {
			c.sweepLocked(now)
		}
		c.entries[clientID] = cl
	}
	c.mu.Unlock()
	return cl, nil
}

// sweepLocked drops entries that get would no longer serve and, if the cache is still
// full, an eighth of the rest in map order (effectively at random: cheaper than
// tracking recency on every hit, and a dropped agent costs one reload). c.mu must be held.
func (c *clientCache) sweepLocked(now time.Time) {
	ttl := c.lifetime()
	for id, e := range c.entries {
		if now.Sub(e.loadedAt) >= ttl || (!e.validUntil.IsZero() && !now.Before(e.validUntil)) {
			delete(c.entries, id)
		}
	}
	if c.max > 0 && len(c.entries) >= c.max {
		n := max(c.max/8, 1)
		for id := range c.entries {
			delete(c.entries, id)
			if n--; n == 0 {
				break
			}
		}
	}
}

// size returns how many entries the cache holds.
func (c *clientCache) size() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// flush drops every entry, and any load in flight is not cached.
func (c *clientCache) flush() {
	c.mu.Lock()
	clear(c.entries)
	c.epoch++
	c.mu.Unlock()
}

// invalidate drops the cached entry of clientID.
func (c *clientCache) invalidate(clientID string) {
	c.mu.Lock()
	delete(c.entries, clientID)
	c.epoch++
	c.mu.Unlock()
	c.group.Forget(clientID)
}
