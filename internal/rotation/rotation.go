// Package rotation runs scheduled and manual rotations of agent credentials and of
// Lanyard's signing keys, and reports how much of the fleet is inside its rotation
// policy.
//
// # Scheduling and replicas
//
// Run starts a gocron scheduler that calls Tick every CheckInterval. Every replica
// reloads the signing keys at each tick (another replica may have rotated them). Only
// the holder of the database lease "rotation" does the rest: it renews the lease while
// it works, so a replica that dies mid-rotation stops renewing and another takes over
// after LeaseTTL, resuming the interrupted rotation from its last persisted step.
// Independently of the lease, the database allows one unfinished rotation per subject,
// so a manual rotation and a scheduled one never run side by side.
//
// # Steps
//
// Agent credentials follow the state machine of package lifecycle (see
// lifecycle.AdvanceCredentialRotation). A signing key rotation is:
//
//	started  → StageKey: generate, write the private key to the secrets backend
//	stored   → RecordNext: record it as next; it is published in the JWKS
//	next     → wait PublishAhead, so relying parties' JWKS caches learn it first
//	         → ActivateNext: it signs; the previous key is retired, published until
//	           every token it signed has expired (keys.Options.MaxTokenTTL)
//	done
//
// A failed step is recorded (attempts, last error), audited (rotation.step_failed) and
// retried at a later tick with exponential backoff (1 s doubling, at most MaxBackoff).
package rotation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/keys"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/store"
)

// LeaseName is the database lease the scheduler holds.
const LeaseName = "rotation"

// ErrStop, returned by a Hook, simulates the process stopping at that point: nothing
// about the failure is persisted, exactly as if the process had died.
var ErrStop = errors.New("rotation: stopped by hook")

// Store is what the engine needs from the database.
type Store interface {
	store.Rotations
	store.SigningKeys
	store.Settings
}

// Auditor records audit events.
type Auditor interface {
	Record(ctx context.Context, e audit.Event) error
}

// Options configure the engine. Zero durations take the defaults given.
type Options struct {
	// AgentEvery is the default rotation interval of managed agent credentials; 0
	// disables scheduled agent rotation (agents may still set their own interval).
	AgentEvery time.Duration
	// AgentGrace is the default grace of a rotated-out agent credential.
	AgentGrace time.Duration
	// KeyEvery is the signing key rotation interval; 0 disables it.
	KeyEvery time.Duration
	// PublishAhead is how long a new signing key is published before it signs.
	PublishAhead time.Duration
	// CheckInterval is how often Run ticks. Default 1m.
	CheckInterval time.Duration
	// LeaseTTL is the scheduler lease's lifetime. Default 2m.
	LeaseTTL time.Duration
	// MaxBackoff caps the retry delay of a failing step. Default 5m.
	MaxBackoff time.Duration
	// Owner names this replica in the lease. Default: host name + random suffix.
	Owner string
	// Algs are the signing key algorithms to rotate. Default ES256 and RS256.
	Algs []string
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Hook, if set, is called at "signing_key.after_store", "signing_key.after_next"
	// and "signing_key.after_activate"; an error stops the rotation there.
	Hook   func(ctx context.Context, point string) error
	Logger *slog.Logger
}

// Engine runs rotations.
type Engine struct {
	st    Store
	svc   *lifecycle.Service
	km    *keys.Manager
	sb    secrets.Backend
	audit Auditor
	opts  Options
	log   *slog.Logger
	m     *metrics

	mu   sync.Mutex // one Tick at a time in this process
	snap sync.Mutex
	last *Compliance
}

// New returns an engine. It does no I/O.
func New(st Store, svc *lifecycle.Service, km *keys.Manager, sb secrets.Backend, aud Auditor, opts Options) *Engine {
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = time.Minute
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 2 * time.Minute
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.AgentGrace < 0 {
		opts.AgentGrace = 0
	}
	if opts.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		opts.Owner = host + "-" + hex.EncodeToString(b[:])
	}
	if len(opts.Algs) == 0 {
		opts.Algs = []string{keys.ES256, keys.RS256}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{st: st, svc: svc, km: km, sb: sb, audit: aud, opts: opts, log: opts.Logger, m: newMetrics()}
}

// Run ticks every CheckInterval (the first tick at once) until ctx ends, then gives
// the lease up.
func (e *Engine) Run(ctx context.Context) error {
	s, err := gocron.NewScheduler(gocron.WithLocation(time.UTC))
	if err != nil {
		return fmt.Errorf("rotation: scheduler: %w", err)
	}
	_, err = s.NewJob(
		gocron.DurationJob(e.opts.CheckInterval),
		gocron.NewTask(func() {
			if err := e.Tick(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("rotation: tick", "err", err)
			}
		}),
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
		gocron.WithStartAt(gocron.WithStartImmediately()),
	)
	if err != nil {
		return fmt.Errorf("rotation: schedule: %w", err)
	}
	s.Start()
	<-ctx.Done()
	_ = s.Shutdown()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = e.st.ReleaseLease(rctx, LeaseName, e.opts.Owner)
	return nil
}

// Tick does one round: reload the keys, and if this replica holds the lease, resume
// open rotations, start the due ones, retry failed secret destructions and refresh the
// compliance figures. It reports whether it held the lease.
func (e *Engine) Tick(ctx context.Context) error {
	_, err := e.TickHeld(ctx)
	return err
}

// TickHeld is Tick, also reporting whether this replica held the lease.
func (e *Engine) TickHeld(ctx context.Context) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m.ticks.Inc()
	if err := e.km.Reload(ctx); err != nil {
		e.log.Warn("rotation: reload signing keys", "err", err)
	}
	now := e.opts.Now()
	held, err := e.st.AcquireLease(ctx, LeaseName, e.opts.Owner, now, now.Add(e.opts.LeaseTTL))
	if err != nil || !held {
		return false, err
	}
	// Renew while working: a long tick must not let another replica in.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.renew(wctx) })
	defer func() { stop(); wg.Wait() }()

	var errs []error
	if err := e.resumeOpen(wctx); err != nil {
		errs = append(errs, err)
	}
	// One pass over the credentials both starts the due rotations and counts compliance
	// (the figures are those at the start of the pass, before this tick's rotations).
	comp, err := e.startDue(wctx)
	if err != nil {
		errs = append(errs, err)
	}
	e.retryDestroys(wctx)
	if comp != nil {
		e.publish(wctx, comp)
	}
	return true, errors.Join(errs...)
}

func (e *Engine) renew(ctx context.Context) {
	t := time.NewTicker(max(e.opts.LeaseTTL/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := e.opts.Now()
			if ok, err := e.st.AcquireLease(ctx, LeaseName, e.opts.Owner, now, now.Add(e.opts.LeaseTTL)); err != nil || !ok {
				e.log.Warn("rotation: lease renewal failed", "held", ok, "err", err)
			}
		}
	}
}

// resumeOpen advances every unfinished rotation whose NotBefore has passed.
func (e *Engine) resumeOpen(ctx context.Context) error {
	open, err := e.st.OpenRotations(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i := range open {
		r := &open[i]
		if r.NotBefore != nil && e.opts.Now().Before(*r.NotBefore) {
			continue
		}
		if err := e.advance(ctx, r); err != nil {
			if errors.Is(err, ErrStop) {
				return err
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// advance runs r's next steps and records a failure for a later retry.
func (e *Engine) advance(ctx context.Context, r *store.Rotation) error {
	from := r.Step
	var (
		next *store.Rotation
		err  error
	)
	switch r.Kind {
	case store.RotationAgentCredential:
		next, _, err = e.svc.AdvanceCredentialRotation(ctx, r)
	case store.RotationSigningKey:
		next, err = e.advanceKey(ctx, r)
	default:
		return fmt.Errorf("rotation: %s has unknown kind %q", r.ID, r.Kind)
	}
	if err == nil {
		if next != nil && next.FinishedAt != nil {
			e.m.finished.WithLabelValues(next.Kind, next.Cause, next.Step).Inc()
		}
		return nil
	}
	if errors.Is(err, ErrStop) || errors.Is(err, context.Canceled) {
		return err
	}
	if next == nil {
		next = r
	}
	e.fail(ctx, next, err)
	return fmt.Errorf("rotation %s (%s %s) at %s: %w", r.ID, r.Kind, r.Subject, from, err)
}

// fail records a failed step: attempts, error, backoff; an audit event and a metric.
func (e *Engine) fail(ctx context.Context, r *store.Rotation, cause error) {
	e.m.failures.WithLabelValues(r.Kind, r.Step).Inc()
	var attempts int
	upd, err := e.st.UpdateRotation(ctx, r.ID, func(o *store.Rotation) error {
		o.Attempts++
		attempts = o.Attempts
		o.LastError = truncate(cause.Error(), 500)
		nb := e.opts.Now().UTC().Add(e.backoff(o.Attempts))
		o.NotBefore = &nb
		return nil
	})
	if err != nil {
		e.log.Error("rotation: record failure", "rotation_id", r.ID, "err", err)
	}
	ev := audit.Event{Type: "rotation.step_failed", Actor: "system", Outcome: "failure", Reason: classify(cause),
		Data: map[string]any{"rotation_id": r.ID, "kind": r.Kind, "step": r.Step, "attempts": attempts}}
	if r.Kind == store.RotationAgentCredential {
		ev.AgentID = r.Subject
	} else {
		ev.Data["alg"] = r.Subject
	}
	if upd != nil && upd.NotBefore != nil {
		ev.Data["retry_at"] = upd.NotBefore.Format(time.RFC3339)
	}
	if err := e.audit.Record(context.WithoutCancel(ctx), ev); err != nil {
		e.log.Error("rotation: audit failure", "err", err)
	}
	e.log.Warn("rotation: step failed; will retry", "rotation_id", r.ID, "kind", r.Kind, "subject", r.Subject, "step", r.Step, "attempts", attempts, "err", cause)
}

// backoff is 1s·2^(attempts-1), at most MaxBackoff.
func (e *Engine) backoff(attempts int) time.Duration {
	d := time.Second
	for i := 1; i < attempts && d < e.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, e.opts.MaxBackoff)
}

// classify is the audit reason of a failure: its class, not its full text.
func classify(err error) string {
	var ue *lifecycle.UnavailableError
	switch {
	case errors.As(err, &ue), errors.Is(err, ErrSecretsBackend):
		return "secrets backend unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error"
}

// ErrSecretsBackend wraps a signing key rotation step that failed in the secrets backend.
var ErrSecretsBackend = errors.New("rotation: secrets backend")

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (e *Engine) hook(ctx context.Context, point string) error {
	if e.opts.Hook == nil {
		return nil
	}
	return e.opts.Hook(ctx, point)
}

// startDue starts the rotations that are due and advances them, and returns the
// compliance figures it counted on the way (nil if the credential scan failed).
func (e *Engine) startDue(ctx context.Context) (*Compliance, error) {
	var errs []error
	now := e.opts.Now()
	comp := &Compliance{ComputedAt: now.UTC()}
	if e.opts.KeyEvery > 0 {
		recs, err := e.st.ListSigningKeys(ctx)
		if err != nil {
			return nil, err
		}
		for _, alg := range e.opts.Algs {
			last, ok := lastActivated(recs, alg)
			comp.SigningKey.add(ok && now.Before(last.Add(e.opts.KeyEvery+e.tolerance())))
			if !ok || now.Before(last.Add(e.opts.KeyEvery-e.opts.PublishAhead)) {
				continue
			}
			if _, err := e.RotateSigningKey(ctx, "system", alg, lifecycle.CauseScheduled, false); err != nil {
				if errors.Is(err, ErrStop) {
					return nil, err
				}
				errs = append(errs, err)
			}
		}
	}
	after := ""
	for {
		// With the fleet-wide default off, only agents with a policy of their own can
		// be due or counted: a million agents without one cost nothing per tick.
		page, err := e.st.ActiveCredentials(ctx, after, 1000, e.opts.AgentEvery <= 0)
		if err != nil {
			return nil, errors.Join(append(errs, err)...)
		}
		for i := range page {
			d := &page[i]
			every, grace := e.agentPolicy(d.Policy)
			if every <= 0 {
				continue
			}
			comp.AgentCredential.add(now.Before(d.CreatedAt.Add(every + e.tolerance())))
			if !managed(&d.Credential) || now.Before(d.CreatedAt.Add(every)) {
				continue
			}
			r, err := e.svc.StartCredentialRotation(ctx, "system", d.AgentID, lifecycle.CauseScheduled, grace)
			if err != nil {
				errs = append(errs, fmt.Errorf("rotation: start for %s: %w", d.AgentID, err))
				continue
			}
			if r.NotBefore != nil && now.Before(*r.NotBefore) {
				continue // an open rotation is backing off
			}
			if err := e.advance(ctx, r); err != nil {
				if errors.Is(err, ErrStop) {
					return nil, err
				}
				errs = append(errs, err)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].AgentID
	}
	comp.AgentCredential.finish()
	comp.SigningKey.finish()
	return comp, errors.Join(errs...)
}

func managed(c *store.Credential) bool {
	return c.Type == store.CredentialClientSecret || c.SecretPath != ""
}

// agentPolicy returns the interval and grace that apply to an agent.
func (e *Engine) agentPolicy(p *store.RotationPolicy) (every, grace time.Duration) {
	if p != nil {
		return time.Duration(p.IntervalSeconds) * time.Second, time.Duration(p.GraceSeconds) * time.Second
	}
	return e.opts.AgentEvery, e.opts.AgentGrace
}

// lastActivated returns when alg's active key was activated (its creation time when
// it was created active).
func lastActivated(recs []store.SigningKey, alg string) (time.Time, bool) {
	var last time.Time
	found := false
	for _, r := range recs {
		if r.Alg != alg || r.State != store.KeyActive {
			continue
		}
		t := r.CreatedAt
		if r.ActivatedAt != nil {
			t = *r.ActivatedAt
		}
		if !found || t.After(last) {
			last, found = t, true
		}
	}
	return last, found
}

// RotateSigningKey starts a rotation of alg's signing key (or returns the one in
// progress) and advances it. Unless immediate, the new key is published for
// PublishAhead before it signs, so the call returns with the rotation at step next;
// the scheduler completes it. immediate (for a suspected compromise) activates at once.
func (e *Engine) RotateSigningKey(ctx context.Context, actor, alg, cause string, immediate bool) (*store.Rotation, error) {
	if !validAlg(alg) {
		return nil, fmt.Errorf("%w: %q", keys.ErrUnsupportedAlg, alg)
	}
	now := e.opts.Now().UTC()
	r := &store.Rotation{ID: newID(), Kind: store.RotationSigningKey, Subject: alg, Step: store.StepStarted,
		Cause: cause, Actor: actor, CreatedAt: now, UpdatedAt: now}
	if immediate {
		r.GraceSeconds = -1 // marks "activate without waiting"
	}
	switch err := e.st.CreateRotation(ctx, r); {
	case errors.Is(err, store.ErrConflict):
		open, err := e.st.OpenRotations(ctx)
		if err != nil {
			return nil, err
		}
		r = nil
		for i := range open {
			if open[i].Kind == store.RotationSigningKey && open[i].Subject == alg {
				r = &open[i]
			}
		}
		if r == nil {
			return nil, fmt.Errorf("rotation: %s rotation finished meanwhile; retry", alg)
		}
		if immediate && r.GraceSeconds != -1 {
			if r, err = e.st.UpdateRotation(ctx, r.ID, func(o *store.Rotation) error { o.GraceSeconds, o.NotBefore = -1, nil; return nil }); err != nil {
				return nil, err
			}
		}
	case err != nil:
		return nil, err
	default:
		if err := e.audit.Record(ctx, audit.Event{Type: "signing_key.rotation_started", Actor: actor, Outcome: "success",
			Data: map[string]any{"rotation_id": r.ID, "alg": alg, "cause": cause, "immediate": immediate}}); err != nil {
			return nil, err
		}
	}
	if r.NotBefore != nil && now.Before(*r.NotBefore) {
		return r, nil
	}
	if err := e.advance(ctx, r); err != nil {
		return r, err
	}
	list, err := e.st.ListRotations(ctx, store.RotationSigningKey, alg, 1)
	if err != nil || len(list) == 0 {
		return r, err
	}
	return &list[0], nil
}

func validAlg(alg string) bool { return alg == keys.ES256 || alg == keys.RS256 }

// advanceKey runs a signing key rotation's next steps.
func (e *Engine) advanceKey(ctx context.Context, r *store.Rotation) (*store.Rotation, error) {
	for {
		var err error
		switch r.Step {
		case store.StepStarted:
			st, serr := e.km.StageKey(ctx, r.Subject)
			if serr != nil {
				return r, fmt.Errorf("%w: %w", ErrSecretsBackend, serr)
			}
			if err := e.hook(ctx, "signing_key.after_store"); err != nil {
				return r, err
			}
			r, err = e.st.UpdateRotation(ctx, r.ID, stepFrom(store.StepStarted, func(o *store.Rotation) {
				o.Step, o.NewRef, o.SecretPath, o.SecretVersion, o.Attempts, o.LastError = store.StepStored, st.KID, st.Path, st.Version, 0, ""
			}))
		case store.StepStored:
			if err := e.km.RecordNext(ctx, keys.Staged{KID: r.NewRef, Alg: r.Subject, Path: r.SecretPath, Version: r.SecretVersion}); err != nil {
				return r, err
			}
			if err := e.hook(ctx, "signing_key.after_next"); err != nil {
				return r, err
			}
			nb := e.opts.Now().UTC().Add(e.opts.PublishAhead)
			r, err = e.st.UpdateRotation(ctx, r.ID, stepFrom(store.StepStored, func(o *store.Rotation) {
				o.Step, o.NotBefore, o.Attempts, o.LastError = store.StepNext, &nb, 0, ""
			}))
		case store.StepNext:
			if r.GraceSeconds != -1 && r.NotBefore != nil && e.opts.Now().Before(*r.NotBefore) {
				return r, nil // published, not yet signing
			}
			prev, _ := e.km.ActiveKID(r.Subject)
			if err := e.km.ActivateNext(ctx, r.Subject, r.NewRef); err != nil {
				return r, err
			}
			if err := e.hook(ctx, "signing_key.after_activate"); err != nil {
				return r, err
			}
			now := e.opts.Now().UTC()
			r, err = e.st.UpdateRotation(ctx, r.ID, stepFrom(store.StepNext, func(o *store.Rotation) {
				o.Step, o.FinishedAt, o.NotBefore, o.Attempts, o.LastError = store.StepDone, &now, nil, 0, ""
				if prev != o.NewRef {
					o.OldRef = prev
				}
			}))
			if err == nil {
				err = e.audit.Record(ctx, audit.Event{Type: "signing_key.rotated", Actor: orSystem(r.Actor), Outcome: "success",
					Data: map[string]any{"rotation_id": r.ID, "alg": r.Subject, "kid": r.NewRef, "previous_kid": r.OldRef, "cause": r.Cause}})
			}
			return r, err
		default:
			return r, nil
		}
		if err != nil {
			return r, err
		}
	}
}

// stepFrom is a compare-and-swap update that applies fn only if the rotation is still
// at step (another process did not advance it meanwhile).
func stepFrom(step string, fn func(o *store.Rotation)) func(o *store.Rotation) error {
	return func(o *store.Rotation) error {
		if o.Step != step {
			return fmt.Errorf("rotation %s moved from %s to %s meanwhile", o.ID, step, o.Step)
		}
		fn(o)
		return nil
	}
}

func orSystem(actor string) string {
	if actor == "" {
		return "system"
	}
	return actor
}

// retryDestroys retries the destruction of decommissioned agents' secrets.
func (e *Engine) retryDestroys(ctx context.Context) {
	paths, err := e.st.SecretDestroys(ctx)
	if err != nil {
		e.log.Warn("rotation: list pending secret destructions", "err", err)
		return
	}
	for _, p := range paths {
		if err := e.sb.Destroy(ctx, p); err != nil {
			e.log.Warn("rotation: destroy secret; will retry", "path", p, "err", err)
			continue
		}
		if err := e.st.DoneSecretDestroy(ctx, p); err != nil {
			continue
		}
		_ = e.audit.Record(ctx, audit.Event{Type: "credential.destroyed", Actor: "system", Outcome: "success", Data: map[string]any{"secret_path": p, "retried": true}})
	}
}

// newID returns "rot_" + 16 random hex characters.
func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "rot_" + time.Now().UTC().Format("20060102150405") + hex.EncodeToString(b[:])
}
