package gormstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lanyardhq/lanyard/internal/store"
)

const (
	// changeChannel is the NOTIFY channel of migration 00008's triggers.
	changeChannel = "lanyard_changes"

	// The feed reconnects after minBackoff, doubling up to maxBackoff.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second

	// A listener only reads, so a connection that died without a word (a host gone, a
	// dropped NAT entry) would look like a quiet one for as long as TCP keepalive
	// takes, about fifteen minutes, while the handler trusts its caches. The feed
	// pings after pingIdle without a notification and counts no answer within
	// pingTimeout as a lost connection.
	pingIdle    = 10 * time.Second
	pingTimeout = 5 * time.Second
)

// ChangeFeed delivers the committed writes of migration 00008's triggers to a
// store.ChangeHandler: agents, credentials and attestation verdicts (ChangeAgent),
// revocations (ChangeRevoked), signing keys (ChangeKeys) and federation issuers
// (ChangeIssuers), for the Store's schema only. It holds one connection of its own,
// outside the pool, for as long as Run runs.
type ChangeFeed struct {
	cfg  *pgx.ConnConfig
	log  *slog.Logger
	live atomic.Bool
	// pingIdle and pingTimeout are the constants of the same names; tests shorten them.
	pingIdle, pingTimeout time.Duration
	// pid is the listening backend's process id (0 when not connected), for the tests.
	pid atomic.Uint32
}

// ChangeFeed returns the Store's change feed, or nil on SQLite: a SQLite database has
// a single server process, which sees its own writes.
func (s *Store) ChangeFeed() *ChangeFeed {
	if s.pgConfig == nil {
		return nil
	}
	return &ChangeFeed{cfg: s.pgConfig, log: s.log, pingIdle: pingIdle, pingTimeout: pingTimeout}
}

// Live reports whether the feed is listening. It changes just before Run calls
// h.Live with the new state.
func (f *ChangeFeed) Live() bool { return f.live.Load() }

// Run listens until ctx is done, then returns nil once its connection is closed. It
// connects with the Store's DSN, LISTENs, and only then calls h.Live(true); every
// notification of the Store's schema becomes an h.Changed call. When the connection
// fails it calls h.Live(false) (once, however many reconnections fail) and reconnects
// with jittered exponential backoff, calling h.Live(true) again after the next LISTEN.
// Returning, it calls h.Live(false) if it was live: nothing invalidates the handler's
// caches any more. A feed runs one Run at a time.
//
// h must be quick: while it blocks, PostgreSQL keeps every later notification for
// this listener in its shared queue, and once that queue is full (8 GB by default)
// every transaction that notifies fails at commit, on every server.
func (f *ChangeFeed) Run(ctx context.Context, h store.ChangeHandler) error {
	if h == nil {
		return errors.New("gormstore: change feed: nil handler")
	}
	backoff := minBackoff
	for {
		wasLive, err := f.listen(ctx, h)
		if f.live.Swap(false) {
			h.Live(false)
		}
		if ctx.Err() != nil {
			return nil
		}
		if wasLive {
			backoff = minBackoff
		}
		// Jittered so that replicas cut off together do not reconnect together.
		wait := backoff/2 + rand.N(backoff/2+1)
		// pgx's errors name the host, user and database, never the password.
		f.log.WarnContext(ctx, "gormstore: change feed: reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listen runs one connection: it connects, LISTENs, reports Live(true) and delivers
// notifications until the connection fails or ctx is done. It returns after closing the
// connection, with whether it got as far as Live(true).
func (f *ChangeFeed) listen(ctx context.Context, h store.ChangeHandler) (wasLive bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, f.cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		f.pid.Store(0)
		// Close says goodbye to the server if it can within the second, and closes the
		// socket regardless.
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	f.pid.Store(conn.PgConn().PID())

	// The triggers tag each payload with the table's schema; the DSN's search_path
	// picks ours, so current_schema() is the one to keep.
	var schema *string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return false, fmt.Errorf("read current schema: %w", err)
	}
	if schema == nil {
		return false, errors.New("no current schema: the search_path names no existing schema")
	}
	if _, err := conn.Exec(ctx, "LISTEN "+changeChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	f.live.Store(true)
	h.Live(true)

	for {
		wctx, cancel := context.WithTimeout(ctx, f.pingIdle)
		n, err := conn.WaitForNotification(wctx)
		// A notification that raced the timer still counts: only a failed wait is idle.
		idle := err != nil && wctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, ctx.Err()
		case idle:
			// pgx leaves the connection usable after a timed-out wait.
			pctx, cancel := context.WithTimeout(ctx, f.pingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("ping: %w", err)
			}
			continue
		case err != nil:
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		c, ours, err := parseChange(n.Payload, *schema)
		switch {
		case err != nil:
			// The payload names agents and tokens: its length is enough to find it.
			f.log.WarnContext(ctx, "gormstore: change feed: skipping a malformed notification",
				"err", err, "payload_bytes", len(n.Payload))
		case ours:
			h.Changed(c)
		}
	}
}

// parseChange decodes a payload of migration 00008's triggers (see there for the
// format). ours is false, with no error, for another schema's change; err describes
// what is malformed without quoting the payload.
func parseChange(payload, schema string) (c store.Change, ours bool, err error) {
	f := strings.Split(payload, "\t")
	// Another schema's payload is none of our business, whatever its format (another
	// deployment may run another version).
	if f[0] != schema {
		return c, false, nil
	}
	if len(f) < 3 {
		return c, false, fmt.Errorf("%d fields, want at least 3", len(f))
	}
	c.Kind = f[1]
	switch c.Kind {
	case store.ChangeAgent:
		if len(f) > 4 || f[2] == "" {
			return store.Change{}, false, errors.New("agent: want an agent id and at most a client id")
		}
		c.AgentID = f[2]
		if len(f) == 4 {
			c.ClientID = f[3]
		}
	case store.ChangeRevoked:
		if len(f) != 4 || f[2] == "" {
			return store.Change{}, false, errors.New("revoked: want a jti and an expiry")
		}
		sec, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return store.Change{}, false, errors.New("revoked: expiry is not a Unix time")
		}
		c.JTI, c.ExpiresAt = f[2], time.Unix(sec, 0).UTC()
	case store.ChangeKeys, store.ChangeIssuers:
		if len(f) != 3 || f[2] != "" {
			return store.Change{}, false, fmt.Errorf("%s: want an empty key", c.Kind)
		}
	default:
		// A newer migration's kind reaches an older binary during a rolling upgrade.
		return store.Change{}, false, errors.New("unknown kind")
	}
	return c, true, nil
}
