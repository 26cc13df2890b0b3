// Package keys manages Lanyard's token signing keys: it generates them, keeps their
// private halves in the secrets backend (never in the database), signs and verifies
// compact JWS with them, publishes their public halves as a JWK Set, and rotates them.
//
// # Keys and states
//
// There is one active key per algorithm (ES256 on P-256 for Lanyard's own tokens, RS256
// on RSA-2048 for relying parties that accept nothing else, such as Entra ID workload
// identity federation). A key's kid is its RFC 7638 JWK SHA-256 thumbprint, base64url
// without padding, so a kid names exactly one public key and anyone can recompute it.
// Metadata (store.SigningKey) lives in the store; the PKCS#8 PEM private key lives in
// the secrets backend at SecretPathPrefix + hex(thumbprint) (the secrets path syntax
// is lower case only, so the base64url kid itself cannot be used).
//
// A key passes through next (published, not signing) → active (signing) → retired
// (published until NotAfter, when the last token it signed has expired). The JWKS
// and Verify both accept exactly the published keys: next, active, and retired keys
// whose NotAfter is still in the future.
//
// # Hot path
//
// Sign and Verify take no lock: they load the current key set with one atomic load.
// Init, Reload and Rotate build a new immutable set and swap it in.
//
// # Replicas
//
// Every replica must call Reload periodically (or when told another replica rotated).
// A replica that has not reloaded keeps signing with a key another replica retired, so
// Options.MaxTokenTTL must cover the longest token lifetime plus the reload interval.
//
// Nothing here logs or returns key material: logs carry kid and alg only.
package keys

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Algorithms Lanyard signs with. Init ensures each has an active key.
const (
	ES256 = "ES256"
	RS256 = "RS256"
)

// algs is the allow-list, in the order Init creates keys.
var algs = [...]string{ES256, RS256}

// algIndex returns alg's index in algs, or -1 if alg is not allowed.
func algIndex(alg string) int {
	switch alg {
	case ES256:
		return 0
	case RS256:
		return 1
	}
	return -1
}

// SecretPathPrefix is where private keys live in the secrets backend.
const SecretPathPrefix = "lanyard/signing-keys/"

// DefaultMaxTokenTTL is Options.MaxTokenTTL's default.
const DefaultMaxTokenTTL = time.Hour

// Sentinel errors; test with errors.Is.
var (
	// ErrInvalidToken wraps every reason Verify refuses a token. Its text, like the
	// wrapped detail, is safe to show the token's presenter.
	ErrInvalidToken = errors.New("keys: invalid token")
	// ErrNoActiveKey reports that Sign has no active key for the algorithm (Init has
	// not run or failed).
	ErrNoActiveKey = errors.New("keys: no active signing key")
	// ErrUnsupportedAlg reports an algorithm other than ES256 and RS256.
	ErrUnsupportedAlg = errors.New("keys: unsupported algorithm")
)

// Options configures a Manager. The zero value is usable.
type Options struct {
	// MaxTokenTTL is how long a retired key stays published: it must be at least the
	// longest lifetime of any token Lanyard signs, plus the replicas' reload interval.
	// Default DefaultMaxTokenTTL (1h).
	MaxTokenTTL time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// OnEvent, if set, is called after each change the Manager persists (a key
	// created, activated or retired), for the audit log. It runs synchronously on the
	// goroutine of Init or Rotate and must not call the Manager.
	OnEvent func(ctx context.Context, ev Event)
}

// Event describes a persisted change of a signing key.
type Event struct {
	// Type is EventCreated, EventActivated or EventRetired.
	Type string
	KID  string
	Alg  string
	// NotAfter is set for EventRetired: when the key leaves the JWKS.
	NotAfter time.Time
}

// Event types.
const (
	EventCreated   = "created"
	EventActivated = "activated"
	EventRetired   = "retired"
)

// Manager owns the signing keys. Create it with NewManager, then call Init before
// Sign. All methods are safe for concurrent use.
type Manager struct {
	st      store.SigningKeys
	sb      secrets.Backend
	log     *slog.Logger
	maxTTL  time.Duration
	now     func() time.Time
	onEvent func(context.Context, Event)
	// generate makes a new private key for alg; tests replace it to avoid paying for
	// RSA key generation in every test.
	generate func(alg string) (crypto.Signer, error)

	mu  sync.Mutex // serialises Init, Reload and Rotate (the writers of cur)
	cur atomic.Pointer[keySet]
	// verified caches tokens whose signature Verify has checked.
	verified verifiedCache
}

// NewManager returns a Manager over st (metadata) and sb (private keys). It does no
// I/O; call Init. A nil logger discards logs.
func NewManager(st store.SigningKeys, sb secrets.Backend, logger *slog.Logger, opts Options) *Manager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		st:       st,
		sb:       sb,
		log:      logger,
		maxTTL:   cmp.Or(opts.MaxTokenTTL, DefaultMaxTokenTTL),
		now:      opts.Now,
		onEvent:  opts.OnEvent,
		generate: generateKey,
	}
	if m.now == nil {
		m.now = time.Now
	}
	if opts.MaxTokenTTL < 0 {
		m.maxTTL = DefaultMaxTokenTTL
	}
	m.cur.Store(&keySet{published: map[string]*publicKey{}, jwks: []byte(`{"keys":[]}`)})
	return m
}

// keySet is an immutable snapshot of the keys; Sign, Verify and JWKS read it lock-free.
type keySet struct {
	// active holds the signing key per algorithm, indexed like algs.
	active [len(algs)]*signingKey
	// published holds every key Verify accepts, by kid. Retired keys carry their
	// NotAfter, which Verify checks against the clock.
	published map[string]*publicKey
	// jwks is the marshalled JWK Set of published; jwksUntil is the earliest NotAfter
	// among its retired keys (zero: none), when it must be rebuilt.
	jwks      []byte
	jwksUntil time.Time
}

// Init makes the Manager ready to sign: it loads every key, and for each algorithm
// without an active key it activates a pending next key (left by an interrupted
// rotation) or generates a new one (secret written first, then the record, state
// active). If several keys of one algorithm are active (two replicas initialised at
// once, or a rotation was interrupted after activating), the most recently activated
// stays active and the others are retired.
//
// Init is idempotent and safe on restart and on several replicas at once. It fails —
// rather than generating a replacement — if an active key's private half cannot be
// read from the secrets backend: that is a misconfiguration (wrong master key, wrong
// Vault path) that a new key would hide.
func (m *Manager) Init(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs, err := m.list(ctx)
	if err != nil {
		return err
	}
	changed := false
	for _, alg := range algs {
		actives, nexts := m.byState(recs, alg)
		switch {
		case len(actives) > 0:
			n, err := m.retireAll(ctx, actives[1:])
			if err != nil {
				return err
			}
			changed = changed || n > 0
		case len(nexts) > 0:
			if err := m.activate(ctx, nexts[0]); err != nil {
				return err
			}
			changed = true
		default:
			if _, err := m.create(ctx, alg, store.KeyActive); err != nil {
				return err
			}
			changed = true
		}
	}
	if changed {
		if recs, err = m.list(ctx); err != nil {
			return err
		}
	}
	return m.install(ctx, recs)
}

// Reload re-reads the keys from the store (another replica may have rotated) and
// swaps in the new set. It changes nothing in the store. On error the current set
// stays in use.
func (m *Manager) Reload(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs, err := m.list(ctx)
	if err != nil {
		return err
	}
	return m.install(ctx, recs)
}

// Rotate replaces the active key for alg. Each step is persisted before the next, in
// an order chosen so that a crash between any two leaves an active key and keeps every
// key that may have signed a live token published:
//
//  1. Create the new key: private key to the secrets backend, then the record in state
//     next. A crash before the record leaves an unreferenced secret (harmless); after
//     it, the key is published but unused, and the next Rotate or Init picks it up
//     instead of generating another.
//  2. Activate it. From here every replica that reloads signs with it: when two keys
//     of one algorithm are active, the most recently activated wins.
//  3. Retire the previous active key with NotAfter = now + MaxTokenTTL, so tokens it
//     signed keep verifying until they expire, and destroy its private key, which
//     nothing may use again. A crash before this leaves two active keys; Init
//     retires the older.
//
// Retiring first would leave a window with no active key; activating before the new
// key is published would let a replica sign with a kid that others do not yet know.
func (m *Manager) Rotate(ctx context.Context, alg string) error {
	if algIndex(alg) < 0 {
		return fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	recs, err := m.list(ctx)
	if err != nil {
		return err
	}
	actives, nexts := m.byState(recs, alg)

	// Step 1: a next key whose private half loads, or a new one.
	var next *store.SigningKey
	for i := range nexts {
		if _, err := m.loadPrivate(ctx, &nexts[i]); err != nil {
			m.log.Warn("keys: pending next key unusable; creating another", "kid", nexts[i].KID, "alg", alg, "err", err)
			continue
		}
		next = &nexts[i]
		m.log.Info("keys: resuming rotation with pending next key", "kid", next.KID, "alg", alg)
		break
	}
	if next == nil {
		if next, err = m.create(ctx, alg, store.KeyNext); err != nil {
			return err
		}
	}
	// Step 2.
	if err := m.activate(ctx, *next); err != nil {
		return err
	}
	// Step 3.
	if _, err := m.retireAll(ctx, actives); err != nil {
		return err
	}
	if recs, err = m.list(ctx); err != nil {
		return err
	}
	if err := m.install(ctx, recs); err != nil {
		return err
	}
	prev := ""
	if len(actives) > 0 {
		prev = actives[0].KID
	}
	m.log.Info("keys: rotated signing key", "alg", alg, "kid", next.KID, "previous_kid", prev)
	return nil
}

// ActiveKID returns the kid of the active key for alg, if there is one.
func (m *Manager) ActiveKID(alg string) (string, bool) {
	i := algIndex(alg)
	if i < 0 {
		return "", false
	}
	k := m.cur.Load().active[i]
	if k == nil {
		return "", false
	}
	return k.pub.kid, true
}

// JWKS returns the JWK Set ({"keys": [...]}) of the published keys — active first,
// then next, then retired keys whose NotAfter is in the future — each with kid, alg
// and "use": "sig" and no private parameter. The bytes are cached and rebuilt only on
// Init, Reload, Rotate, or when a retired key reaches its NotAfter. The returned slice
// is shared: callers must not modify it.
func (m *Manager) JWKS() []byte {
	set := m.cur.Load()
	if set.jwksUntil.IsZero() {
		return set.jwks
	}
	now := m.now()
	if now.Before(set.jwksUntil) {
		return set.jwks
	}
	// A retired key has expired since the set was built: drop it. Losing the race to
	// swap is fine: whoever won built at least as fresh a set.
	ns, err := set.withoutExpired(now)
	if err != nil {
		m.log.Error("keys: rebuild JWKS", "err", err)
		return set.jwks
	}
	m.cur.CompareAndSwap(set, ns)
	return ns.jwks
}

func (s *keySet) withoutExpired(now time.Time) (*keySet, error) {
	ns := &keySet{active: s.active, published: make(map[string]*publicKey, len(s.published))}
	for kid, k := range s.published {
		if !k.expired(now) {
			ns.published[kid] = k
		}
	}
	var err error
	ns.jwks, ns.jwksUntil, err = buildJWKS(ns.published, now)
	return ns, err
}

// list returns the store's records.
func (m *Manager) list(ctx context.Context) ([]store.SigningKey, error) {
	recs, err := m.st.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("keys: list signing keys: %w", err)
	}
	return recs, nil
}

// byState returns alg's valid active keys, most recently activated first, and its
// valid next keys, newest first. Invalid records are logged and left out.
func (m *Manager) byState(recs []store.SigningKey, alg string) (actives, nexts []store.SigningKey) {
	for _, r := range recs {
		if r.Alg != alg || (r.State != store.KeyActive && r.State != store.KeyNext) {
			continue
		}
		if _, err := parseRecord(&r); err != nil {
			m.log.Error("keys: ignoring invalid signing key record", "kid", r.KID, "alg", r.Alg, "err", err)
			continue
		}
		if r.State == store.KeyActive {
			actives = append(actives, r)
		} else {
			nexts = append(nexts, r)
		}
	}
	slices.SortStableFunc(actives, newestActiveFirst)
	slices.SortStableFunc(nexts, func(a, b store.SigningKey) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.KID, a.KID))
	})
	return actives, nexts
}

// newestActiveFirst orders active keys so that every replica picks the same one: the
// latest ActivatedAt, then the latest CreatedAt, then the greatest kid.
func newestActiveFirst(a, b store.SigningKey) int {
	return cmp.Or(
		timePtr(b.ActivatedAt).Compare(timePtr(a.ActivatedAt)),
		b.CreatedAt.Compare(a.CreatedAt),
		cmp.Compare(b.KID, a.KID),
	)
}

func timePtr(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// create generates a key for alg, writes its private half to the secrets backend, then
// records it in state (next or active). The secret is written first so that no record
// ever points at a missing secret. If the record cannot be written the secret is left
// in place: the error may hide a successful commit, and an unreferenced secret is
// harmless whereas a record whose secret was destroyed is not.
func (m *Manager) create(ctx context.Context, alg, state string) (*store.SigningKey, error) {
	priv, err := m.generate(alg)
	if err != nil {
		return nil, fmt.Errorf("keys: generate %s key: %w", alg, err)
	}
	kid, thumb, pubJWK, err := publicJWK(priv.Public(), alg)
	if err != nil {
		return nil, err
	}
	pemText, err := marshalPrivate(priv)
	if err != nil {
		return nil, err
	}
	path := secretPath(thumb)
	version, err := m.sb.Put(ctx, path, map[string]string{
		secretKeyPEM: pemText,
		secretKeyKID: kid,
		secretKeyAlg: alg,
	})
	if err != nil {
		return nil, fmt.Errorf("keys: store %s private key %s: %w", alg, kid, err)
	}
	now := m.now().UTC()
	rec := &store.SigningKey{
		KID:           kid,
		Alg:           alg,
		State:         state,
		PublicJWK:     pubJWK,
		SecretPath:    path,
		SecretVersion: version,
		CreatedAt:     now,
	}
	if state == store.KeyActive {
		rec.ActivatedAt = &now
	}
	if err := m.st.CreateSigningKey(ctx, rec); err != nil {
		return nil, fmt.Errorf("keys: record %s key %s: %w", alg, kid, err)
	}
	m.log.Info("keys: created signing key", "kid", kid, "alg", alg, "state", state)
	m.emit(ctx, Event{Type: EventCreated, KID: kid, Alg: alg})
	if state == store.KeyActive {
		m.emit(ctx, Event{Type: EventActivated, KID: kid, Alg: alg})
	}
	return rec, nil
}

// errState aborts a compare-and-swap update whose precondition no longer holds.
type errState struct{ kid, state, want string }

func (e *errState) Error() string {
	return fmt.Sprintf("keys: key %s is %s, want %s", e.kid, e.state, e.want)
}

// activate moves a next key to active. A key another replica already activated is
// left as it is.
func (m *Manager) activate(ctx context.Context, r store.SigningKey) error {
	now := m.now().UTC()
	done := false
	_, err := m.st.UpdateSigningKey(ctx, r.KID, func(k *store.SigningKey) error {
		switch k.State {
		case store.KeyActive:
			return nil
		case store.KeyNext:
			k.State, k.ActivatedAt, done = store.KeyActive, &now, true
			return nil
		}
		return &errState{k.KID, k.State, store.KeyNext}
	})
	if err != nil {
		return fmt.Errorf("keys: activate %s key %s: %w", r.Alg, r.KID, err)
	}
	if done {
		m.log.Info("keys: activated signing key", "kid", r.KID, "alg", r.Alg)
		m.emit(ctx, Event{Type: EventActivated, KID: r.KID, Alg: r.Alg})
	}
	return nil
}

// retireAll retires the given active keys with NotAfter = now + MaxTokenTTL and then
// destroys their private keys. It returns how many it retired.
func (m *Manager) retireAll(ctx context.Context, recs []store.SigningKey) (int, error) {
	n := 0
	for _, r := range recs {
		now := m.now().UTC()
		notAfter := now.Add(m.maxTTL)
		done := false
		_, err := m.st.UpdateSigningKey(ctx, r.KID, func(k *store.SigningKey) error {
			switch k.State {
			case store.KeyRetired:
				return nil
			case store.KeyActive:
				k.State, k.RetiredAt, k.NotAfter, done = store.KeyRetired, &now, &notAfter, true
				return nil
			}
			return &errState{k.KID, k.State, store.KeyActive}
		})
		if err != nil {
			return n, fmt.Errorf("keys: retire %s key %s: %w", r.Alg, r.KID, err)
		}
		if !done {
			continue
		}
		n++
		m.log.Info("keys: retired signing key", "kid", r.KID, "alg", r.Alg, "not_after", notAfter)
		m.emit(ctx, Event{Type: EventRetired, KID: r.KID, Alg: r.Alg, NotAfter: notAfter})
		// Verification needs only the public key, which the record holds. Failing to
		// destroy is logged, not fatal: the key is retired either way.
		if err := m.sb.Destroy(ctx, r.SecretPath); err != nil {
			m.log.Warn("keys: could not destroy retired private key", "kid", r.KID, "alg", r.Alg, "err", err)
		}
	}
	return n, nil
}

func (m *Manager) emit(ctx context.Context, ev Event) {
	if m.onEvent != nil {
		m.onEvent(ctx, ev)
	}
}

// install builds the key set from recs and swaps it in. Private keys already loaded
// in the current set are reused; others are read from the secrets backend.
func (m *Manager) install(ctx context.Context, recs []store.SigningKey) error {
	now := m.now()
	prev := m.cur.Load()
	set := &keySet{published: make(map[string]*publicKey, len(recs))}
	var (
		actives [len(algs)][]store.SigningKey
		err     error
	)
	for _, r := range recs {
		pk, err := parseRecord(&r)
		if err != nil {
			m.log.Error("keys: ignoring invalid signing key record", "kid", r.KID, "alg", r.Alg, "err", err)
			continue
		}
		if pk.expired(now) || (r.State == store.KeyRetired && r.NotAfter == nil) {
			continue
		}
		set.published[pk.kid] = pk
		if r.State == store.KeyActive {
			i := algIndex(r.Alg)
			actives[i] = append(actives[i], r)
		}
	}
	for i, alg := range algs {
		if len(actives[i]) == 0 {
			m.log.Warn("keys: no active signing key", "alg", alg)
			continue
		}
		if len(actives[i]) > 1 {
			slices.SortStableFunc(actives[i], newestActiveFirst)
			m.log.Warn("keys: several active signing keys; signing with the most recently activated", "alg", alg, "kid", actives[i][0].KID, "count", len(actives[i]))
		}
		r := &actives[i][0]
		if old := prev.active[i]; old != nil && old.pub.kid == r.KID {
			set.active[i] = old
			continue
		}
		sk, err := m.loadPrivate(ctx, r)
		if err != nil {
			return err
		}
		sk.pub = set.published[r.KID]
		set.active[i] = sk
	}
	if set.jwks, set.jwksUntil, err = buildJWKS(set.published, now); err != nil {
		return err
	}
	m.cur.Store(set)
	return nil
}

// loadPrivate reads r's private key from the secrets backend and checks that it is
// the private half of r's public key (so a swapped secret cannot sign under r's kid).
func (m *Manager) loadPrivate(ctx context.Context, r *store.SigningKey) (*signingKey, error) {
	pub, err := parseRecord(r)
	if err != nil {
		return nil, err
	}
	if r.SecretVersion < 1 {
		return nil, fmt.Errorf("keys: %s key %s: record has no secret version", r.Alg, r.KID)
	}
	sec, err := m.sb.Get(ctx, r.SecretPath, r.SecretVersion)
	if err != nil {
		return nil, fmt.Errorf("keys: read %s private key %s: %w", r.Alg, r.KID, err)
	}
	sk, err := parsePrivate(sec.Data[secretKeyPEM], pub)
	if err != nil {
		return nil, fmt.Errorf("keys: %s private key %s: %w", r.Alg, r.KID, err)
	}
	return sk, nil
}

// publicKey is a parsed, validated published key.
type publicKey struct {
	kid, alg, state string
	ec              *ecdsa.PublicKey
	rsa             *rsa.PublicKey
	notAfter        time.Time // zero unless retired
	createdAt       time.Time
}

func (k *publicKey) expired(now time.Time) bool {
	return !k.notAfter.IsZero() && !now.Before(k.notAfter)
}
