package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/requestid"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Store is where admin-added issuers live.
type Store interface {
	CreateFederationIssuer(ctx context.Context, i *store.FederationIssuer) error
	ListFederationIssuers(ctx context.Context) ([]store.FederationIssuer, error)
	DeleteFederationIssuer(ctx context.Context, issuer string) error
}

// Auditor records an audit event durably.
type Auditor interface {
	Record(ctx context.Context, e audit.Event) error
}

// Options tune the service. Zero values take the documented defaults.
type Options struct {
	// Config are the issuers trusted by the server configuration (read-only).
	Config []Issuer
	// HTTPClient fetches discovery documents and JWKS. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Refresh is how often each issuer's keys are refetched in the background. Default 1h.
	Refresh time.Duration
	// MinRefetch is the least time between two fetches of one issuer's keys caused by an
	// unknown kid (and between retries after a failed fetch). Default 1m.
	MinRefetch time.Duration
	// Reload is how often admin-added issuers are re-read from the store, so that
	// changes made on another replica take effect. Default 30s.
	Reload time.Duration
	// Leeway tolerates clock skew on exp, nbf and iat; at most 60s. Default 30s.
	Leeway time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Service holds the trusted issuers and their keys.
type Service struct {
	st    Store
	audit Auditor
	opts  Options

	mu      sync.RWMutex
	issuers map[string]*issuerState
}

type issuerState struct {
	cfg    Issuer
	tenant string
	keys   *keyCache
}

// New returns a Service trusting the configured issuers; Load adds the stored ones.
func New(st Store, aud Auditor, o Options) *Service {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Refresh == 0 {
		o.Refresh = time.Hour
	}
	if o.MinRefetch == 0 {
		o.MinRefetch = time.Minute
	}
	if o.Reload == 0 {
		o.Reload = 30 * time.Second
	}
	if o.Leeway == 0 {
		o.Leeway = 30 * time.Second
	}
	o.Leeway = min(o.Leeway, time.Minute)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{st: st, audit: aud, opts: o, issuers: map[string]*issuerState{}}
	s.install(nil)
	return s
}

// install replaces the trusted set by the configured issuers plus stored, keeping the
// key cache of every issuer whose settings did not change.
func (s *Service) install(stored []Issuer) {
	next := map[string]*issuerState{}
	// The write lock for the whole swap: Load runs both from Run and from the change
	// feed (another replica changed the issuers). A state is never changed once
	// published (Verify reads it without the lock): a kept issuer gets a new state
	// that shares the old key cache.
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, list := range [][]Issuer{stored, s.opts.Config} { // configuration wins
		for _, iss := range list {
			if old := s.issuers[iss.Issuer]; old != nil && sameSettings(old.cfg, iss) {
				next[iss.Issuer] = &issuerState{cfg: iss, tenant: old.tenant, keys: old.keys}
				continue
			}
			st := &issuerState{cfg: iss, keys: &keyCache{iss: iss, client: s.opts.HTTPClient, minRefetch: s.opts.MinRefetch}}
			if iss.Kind == KindEntra {
				st.tenant, _ = entraTenant(iss.Issuer)
			}
			next[iss.Issuer] = st
		}
	}
	s.issuers = next
}

func sameSettings(a, b Issuer) bool {
	return a.Issuer == b.Issuer && a.Kind == b.Kind && a.JWKSURL == b.JWKSURL && slices.Equal(a.Algs, b.Algs)
}

// Load reads the stored issuers. The server calls it at start and Run calls it again
// every Reload.
func (s *Service) Load(ctx context.Context) error {
	recs, err := s.st.ListFederationIssuers(ctx)
	if err != nil {
		return fmt.Errorf("federation: load issuers: %w", err)
	}
	list := make([]Issuer, len(recs))
	for i, r := range recs {
		list[i] = fromRecord(r)
	}
	s.install(list)
	return nil
}

func (s *Service) issuer(iss string) *issuerState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.issuers[iss]
}

// Trusted reports whether iss is a trusted issuer.
func (s *Service) Trusted(iss string) bool { return iss != "" && s.issuer(iss) != nil }

// IssuerStatus is an issuer with the state of its key cache.
type IssuerStatus struct {
	Issuer
	KeysFetchedAt time.Time `json:"keys_fetched_at,omitzero"`
	Keys          int       `json:"keys"`
	LastError     string    `json:"last_error,omitempty"`
}

// Issuers lists the trusted issuers, ordered by URL.
func (s *Service) Issuers() []IssuerStatus {
	s.mu.RLock()
	out := make([]IssuerStatus, 0, len(s.issuers))
	for _, st := range s.issuers {
		fetched, n, err := st.keys.state()
		is := IssuerStatus{Issuer: st.cfg, KeysFetchedAt: fetched, Keys: n}
		if err != nil {
			is.LastError = err.Error()
		}
		out = append(out, is)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Issuer.Issuer < out[j].Issuer.Issuer })
	return out
}

// AddIssuer trusts a new issuer and fetches its keys once (a failure is reported in the
// issuer's status, not as an error: the issuer may come up later).
func (s *Service) AddIssuer(ctx context.Context, actor string, req IssuerRequest) (*IssuerStatus, error) {
	iss, err := req.Validate()
	if err != nil {
		return nil, err
	}
	if st := s.issuer(iss.Issuer); st != nil && st.cfg.Source == "config" {
		return nil, &lifecycle.ConflictError{Detail: fmt.Sprintf("issuer %q is trusted by the server configuration", iss.Issuer)}
	}
	rec := &store.FederationIssuer{Issuer: iss.Issuer, Kind: iss.Kind, Algs: iss.Algs, JWKSURL: iss.JWKSURL, CreatedAt: s.opts.Now().UTC().Truncate(time.Microsecond)}
	if err := s.st.CreateFederationIssuer(ctx, rec); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, &lifecycle.ConflictError{Detail: fmt.Sprintf("issuer %q is already trusted", iss.Issuer), Err: err}
		}
		return nil, err
	}
	if err := s.record(ctx, actor, "federation.issuer_added", map[string]any{
		"issuer": iss.Issuer, "kind": iss.Kind, "algs": iss.Algs, "jwks_url": iss.JWKSURL}); err != nil {
		return nil, err
	}
	if err := s.Load(ctx); err != nil {
		return nil, err
	}
	st := s.issuer(iss.Issuer)
	if err := st.keys.refresh(ctx, s.opts.Now()); err != nil {
		s.opts.Logger.WarnContext(ctx, "federation issuer keys not fetched", "issuer", iss.Issuer, "err", err)
	}
	for _, is := range s.Issuers() {
		if is.Issuer.Issuer == iss.Issuer {
			return &is, nil
		}
	}
	return nil, fmt.Errorf("federation: issuer %s vanished", iss.Issuer)
}

// RemoveIssuer stops trusting an admin-added issuer. Federated credentials naming it
// stay registered but authenticate nobody until it is trusted again.
func (s *Service) RemoveIssuer(ctx context.Context, actor, issuer string) error {
	if st := s.issuer(issuer); st != nil && st.cfg.Source == "config" {
		return &lifecycle.ConflictError{Detail: fmt.Sprintf("issuer %q is trusted by the server configuration; change the configuration to remove it", issuer)}
	}
	if err := s.st.DeleteFederationIssuer(ctx, issuer); err != nil {
		return err
	}
	if err := s.record(ctx, actor, "federation.issuer_removed", map[string]any{"issuer": issuer}); err != nil {
		return err
	}
	return s.Load(ctx)
}

func (s *Service) record(ctx context.Context, actor, typ string, data map[string]any) error {
	e := audit.Event{Type: typ, Actor: actor, Outcome: "success", RequestID: requestid.From(ctx), Data: data}
	if err := s.audit.Record(ctx, e); err != nil {
		return fmt.Errorf("federation: audit %s: %w", typ, err)
	}
	return nil
}

// Run refreshes every issuer's keys in the background until ctx ends: at once, then
// every Refresh (a failed fetch is retried every MinRefetch), and re-reads the stored
// issuers every Reload.
func (s *Service) Run(ctx context.Context) error {
	tick := min(s.opts.MinRefetch, s.opts.Reload)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastLoad := s.opts.Now()
	for {
		now := s.opts.Now()
		if now.Sub(lastLoad) >= s.opts.Reload {
			if err := s.Load(ctx); err != nil && ctx.Err() == nil {
				s.opts.Logger.Warn("federation: reload issuers", "err", err)
			}
			lastLoad = now
		}
		s.refreshDue(ctx, now)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) refreshDue(ctx context.Context, now time.Time) {
	s.mu.RLock()
	var due []*issuerState
	for _, st := range s.issuers {
		st.keys.mu.RLock()
		stale := now.Sub(st.keys.fetched) >= s.opts.Refresh
		retry := st.keys.lastErr == nil || now.Sub(st.keys.attempted) >= s.opts.MinRefetch
		st.keys.mu.RUnlock()
		if stale && retry {
			due = append(due, st)
		}
	}
	s.mu.RUnlock()
	for _, st := range due {
		if err := st.keys.refresh(ctx, now); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("federation: refresh issuer keys; cached keys stay in use", "issuer", st.cfg.Issuer, "err", err)
		}
	}
}
