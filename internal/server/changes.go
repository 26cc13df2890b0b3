package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanyardhq/lanyard/internal/federation"
	"github.com/lanyardhq/lanyard/internal/keys"
	"github.com/lanyardhq/lanyard/internal/oauth"
	"github.com/lanyardhq/lanyard/internal/store"
)

// changeRouter hands the change feed's events (PostgreSQL NOTIFY from every replica's
// committed writes) to what caches the changed data: the OAuth provider (agents and
// revocations), the signing keys and the trusted issuers.
type changeRouter struct {
	log      *slog.Logger
	provider *oauth.Provider
	keys     *keys.Manager
	fed      *federation.Service
	// feedLive reports the feed's own state (gormstore.ChangeFeed.Live): the readiness
	// check and the metric read it rather than keep a copy.
	feedLive func() bool

	// reloadKeys and reloadIssuers coalesce reload requests: a reload reads the store
	// (and for keys the secrets backend), so it runs on its own goroutine rather than
	// holding up the feed, and a burst of changes causes one more reload at most.
	reloadKeys, reloadIssuers chan struct{}
}

func newChangeRouter(log *slog.Logger, p *oauth.Provider, km *keys.Manager, fed *federation.Service, feedLive func() bool, reg prometheus.Registerer) *changeRouter {
	r := &changeRouter{log: log, provider: p, keys: km, fed: fed, feedLive: feedLive,
		reloadKeys: make(chan struct{}, 1), reloadIssuers: make(chan struct{}, 1)}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lanyard_change_feed_live",
		Help: "1 while this replica receives other replicas' changes (PostgreSQL LISTEN), else 0.",
	}, func() float64 {
		if feedLive() {
			return 1
		}
		return 0
	}))
	return r
}

// Live implements store.ChangeHandler.
func (r *changeRouter) Live(live bool) {
	if live {
		// Changes made while the feed was down were missed: reload everything.
		r.kick(r.reloadKeys)
		r.kick(r.reloadIssuers)
	}
	r.provider.Live(live)
}

// Changed implements store.ChangeHandler.
func (r *changeRouter) Changed(c store.Change) {
	switch c.Kind {
	case store.ChangeKeys:
		r.kick(r.reloadKeys)
	case store.ChangeIssuers:
		r.kick(r.reloadIssuers)
	default:
		r.provider.Changed(c)
	}
}

func (r *changeRouter) kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // a reload is already pending; it will see this change too
	}
}

// check reports the feed's state for /readyz: a replica without it still serves
// correctly, reading from the database, so it is degraded, not unready.
func (r *changeRouter) check(context.Context) error {
	if !r.feedLive() {
		return errors.New("change feed not live: other replicas' changes are seen through short cache lifetimes")
	}
	return nil
}

// run performs the reloads the feed asked for until ctx ends.
func (r *changeRouter) run(ctx context.Context) error {
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-r.reloadKeys:
			err = withTimeout(ctx, r.keys.Reload)
			if err != nil {
				r.log.Warn("reload signing keys after a change on another replica", "err", err)
			}
		case <-r.reloadIssuers:
			err = withTimeout(ctx, r.fed.Load)
			if err != nil {
				r.log.Warn("reload trusted issuers after a change on another replica", "err", err)
			}
		}
	}
}

func withTimeout(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return fn(ctx)
}
