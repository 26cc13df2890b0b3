package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// maxDocumentBytes bounds a discovery document or JWKS.
const maxDocumentBytes = 1 << 20

// maxKeys bounds the keys kept for one issuer.
const maxKeys = 100

// errUnknownKID and errJWKSUnavailable are the two ways a key lookup fails.
var (
	errUnknownKID      = errors.New("federation: kid not in the issuer's JWKS")
	errJWKSUnavailable = errors.New("federation: issuer's JWKS is unavailable")
)

// keyCache holds one issuer's verification keys.
type keyCache struct {
	iss        Issuer
	client     *http.Client
	minRefetch time.Duration

	mu        sync.RWMutex
	keys      []jose.JSONWebKey
	fetched   time.Time // last successful fetch
	attempted time.Time // last fetch attempt
	lastErr   error

	group singleflight.Group
}

// key returns the key for kid (or, without kid, the only key that fits alg). An unknown
// kid triggers a synchronous refresh at most once per minRefetch.
func (k *keyCache) key(ctx context.Context, kid, alg string, now time.Time) (*jose.JSONWebKey, error) {
	if key, err := k.find(kid, alg); err == nil || !errors.Is(err, errUnknownKID) {
		return key, err
	}
	k.mu.RLock()
	may := now.Sub(k.attempted) >= k.minRefetch
	k.mu.RUnlock()
	if may {
		_, _, _ = k.group.Do("refresh", func() (any, error) {
			// Re-check under singleflight: a concurrent refresh may just have run.
			k.mu.RLock()
			again := now.Sub(k.attempted) >= k.minRefetch
			k.mu.RUnlock()
			if !again {
				return nil, nil
			}
			return nil, k.refresh(context.WithoutCancel(ctx), now)
		})
	}
	key, err := k.find(kid, alg)
	if errors.Is(err, errUnknownKID) {
		k.mu.RLock()
		lastErr := k.lastErr
		k.mu.RUnlock()
		if lastErr != nil {
			return nil, fmt.Errorf("%w: %w", errJWKSUnavailable, lastErr)
		}
	}
	return key, err
}

func (k *keyCache) find(kid, alg string) (*jose.JSONWebKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var found *jose.JSONWebKey
	for i := range k.keys {
		key := &k.keys[i]
		if kid != "" {
			if key.KeyID == kid {
				if !keyFits(key, alg) {
					return nil, fmt.Errorf("federation: key %q does not allow alg %s", clip(kid), alg)
				}
				return key, nil
			}
			continue
		}
		if keyFits(key, alg) {
			if found != nil {
				return nil, fmt.Errorf("federation: the token has no kid and several of the issuer's keys fit %s", alg)
			}
			found = key
		}
	}
	if found == nil {
		return nil, errUnknownKID
	}
	return found, nil
}

// keyFits reports whether key may verify a signature made with alg.
func keyFits(key *jose.JSONWebKey, alg string) bool {
	if key.Algorithm != "" && key.Algorithm != alg {
		return false
	}
	switch pub := key.Key.(type) {
	case *rsa.PublicKey:
		return (alg == "RS256" || alg == "PS256") && pub.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		return alg == "ES256" && pub.Curve.Params().Name == "P-256"
	}
	return false
}

// refresh fetches the discovery document (unless the JWKS URL is configured) and the
// JWKS, and replaces the cached keys. On failure the cached keys stay.
func (k *keyCache) refresh(ctx context.Context, now time.Time) error {
	k.mu.Lock()
	k.attempted = now
	k.mu.Unlock()
	keys, err := k.fetch(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastErr = err
	if err != nil {
		return err
	}
	k.keys, k.fetched = keys, now
	return nil
}

func (k *keyCache) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	jwksURL := k.iss.JWKSURL
	if jwksURL == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := k.get(ctx, k.iss.discoveryURL(), &doc); err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		if doc.Issuer != k.iss.Issuer {
			return nil, fmt.Errorf("discovery: document issuer %q is not %q", clip(doc.Issuer), k.iss.Issuer)
		}
		if _, err := checkURL(doc.JWKSURI); err != nil {
			return nil, fmt.Errorf("discovery: jwks_uri %w", err)
		}
		jwksURL = doc.JWKSURI
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := k.get(ctx, jwksURL, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	keys, err := parseKeys(set.Keys)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", jwksURL, err)
	}
	return keys, nil
}

// parseKeys keeps the usable public signing keys of a JWKS. Keys of other types or
// uses are skipped, so one exotic key does not make the issuer unusable.
func parseKeys(raw []json.RawMessage) ([]jose.JSONWebKey, error) {
	var keys []jose.JSONWebKey
	for _, r := range raw {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(r); err != nil {
			continue
		}
		if !key.Valid() || !key.IsPublic() || (key.Use != "" && key.Use != "sig") {
			continue
		}
		switch key.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
		default:
			continue
		}
		keys = append(keys, key)
		if len(keys) == maxKeys {
			break
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable signing key")
	}
	return keys, nil
}

func (k *keyCache) get(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" && mt != "application/jwk-set+json" {
		return fmt.Errorf("GET %s: content type %q is not JSON", url, mt)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxDocumentBytes {
		return fmt.Errorf("GET %s: larger than %d bytes", url, maxDocumentBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// state reports when the keys were last fetched and the last error, for the API.
func (k *keyCache) state() (fetched time.Time, nkeys int, lastErr error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.fetched, len(k.keys), k.lastErr
}
