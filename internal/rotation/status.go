package rotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanyardhq/lanyard/internal/store"
)

// complianceSetting is the settings key under which the lease holder publishes the
// fleet's compliance, so every replica reports the same figures.
const complianceSetting = "rotation.compliance"

// Counts are the credentials of one kind that have a rotation policy (interval > 0),
// and how many of them are inside it.
type Counts struct {
	Total    int     `json:"total"`
	InPolicy int     `json:"in_policy"`
	Overdue  int     `json:"overdue"`
	Ratio    float64 `json:"compliance"` // InPolicy/Total; 1 when Total is 0
}

func (c *Counts) add(in bool) {
	c.Total++
	if in {
		c.InPolicy++
	} else {
		c.Overdue++
	}
}

func (c *Counts) finish() {
	c.Ratio = 1
	if c.Total > 0 {
		c.Ratio = float64(c.InPolicy) / float64(c.Total)
	}
}

// Compliance is the fleet's rotation compliance at a moment.
type Compliance struct {
	ComputedAt      time.Time `json:"computed_at"`
	AgentCredential Counts    `json:"agent_credentials"`
	SigningKey      Counts    `json:"signing_keys"`
}

// tolerance is how late a rotation may be and still count as inside policy: the
// scheduler only looks every CheckInterval.
func (e *Engine) tolerance() time.Duration { return 2 * e.opts.CheckInterval }

func (e *Engine) computeCompliance(ctx context.Context) (*Compliance, error) {
	now := e.opts.Now().UTC()
	c := &Compliance{ComputedAt: now}
	after := ""
	for {
		page, err := e.st.ActiveCredentials(ctx, after, 1000, e.opts.AgentEvery <= 0)
		if err != nil {
			return nil, err
		}
		for i := range page {
			every, _ := e.agentPolicy(page[i].Policy)
			if every <= 0 {
				continue
			}
			c.AgentCredential.add(now.Before(page[i].CreatedAt.Add(every + e.tolerance())))
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].AgentID
	}
	if e.opts.KeyEvery > 0 {
		recs, err := e.st.ListSigningKeys(ctx)
		if err != nil {
			return nil, err
		}
		for _, alg := range e.opts.Algs {
			last, ok := lastActivated(recs, alg)
			c.SigningKey.add(ok && now.Before(last.Add(e.opts.KeyEvery+e.tolerance())))
		}
	}
	c.AgentCredential.finish()
	c.SigningKey.finish()
	return c, nil
}

func (e *Engine) publish(ctx context.Context, c *Compliance) {
	e.snap.Lock()
	e.last = c
	e.snap.Unlock()
	b, _ := json.Marshal(c)
	if err := e.st.PutSetting(ctx, complianceSetting, b); err != nil {
		e.log.Warn("rotation: publish compliance", "err", err)
	}
}

// Compliance returns the latest published compliance figures (computed by whichever
// replica holds the lease), or computes them when none were published yet.
func (e *Engine) Compliance(ctx context.Context) (*Compliance, error) {
	b, err := e.st.GetSetting(ctx, complianceSetting)
	if err == nil {
		var c Compliance
		if json.Unmarshal(b, &c) == nil {
			return &c, nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return e.computeCompliance(ctx)
}

// CredentialStatus is the rotation status of one agent's credential.
type CredentialStatus struct {
	AgentID string `json:"agent_id"`
	// CredentialID is the active credential; Managed whether Lanyard holds its secret
	// (only managed credentials are rotated by the scheduler).
	CredentialID string `json:"credential_id,omitempty"`
	Managed      bool   `json:"managed"`
	// Interval and Grace are the policy that applies; Source says whose ("server" or "agent").
	Interval      string     `json:"interval"`
	Grace         string     `json:"grace"`
	Source        string     `json:"source"`
	LastRotatedAt *time.Time `json:"last_rotated_at,omitempty"`
	NextDueAt     *time.Time `json:"next_due_at,omitempty"`
	InPolicy      bool       `json:"in_policy"`
	// Rotations are the most recent rotations, newest first.
	Rotations []RotationView `json:"rotations"`
}

// RotationView is a rotation as the API shows it.
type RotationView struct {
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`
	Subject       string     `json:"subject"`
	Step          string     `json:"step"`
	Cause         string     `json:"cause"`
	NewRef        string     `json:"new_ref,omitempty"`
	OldRef        string     `json:"old_ref,omitempty"`
	SecretPath    string     `json:"secret_path,omitempty"`
	SecretVersion int        `json:"secret_version,omitempty"`
	Attempts      int        `json:"attempts,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	NotBefore     *time.Time `json:"not_before,omitempty"`
	GraceUntil    *time.Time `json:"grace_until,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
}

// View renders r for the API.
func View(r store.Rotation) RotationView {
	return RotationView{ID: r.ID, Kind: r.Kind, Subject: r.Subject, Step: r.Step, Cause: r.Cause, NewRef: r.NewRef, OldRef: r.OldRef,
		SecretPath: r.SecretPath, SecretVersion: r.SecretVersion, Attempts: r.Attempts, LastError: r.LastError,
		NotBefore: r.NotBefore, GraceUntil: r.GraceUntil, CreatedAt: r.CreatedAt, FinishedAt: r.FinishedAt}
}

// AgentStatus returns the rotation status of the agent's credential.
func (e *Engine) AgentStatus(ctx context.Context, agentID string, creds []store.Credential) (*CredentialStatus, error) {
	pol, err := e.st.GetRotationPolicy(ctx, agentID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	every, grace := e.agentPolicy(pol)
	out := &CredentialStatus{AgentID: agentID, Interval: every.String(), Grace: grace.String(), Source: "server", Rotations: []RotationView{}}
	if pol != nil {
		out.Source = "agent"
	}
	now := e.opts.Now().UTC()
	out.InPolicy = true
	for i := range creds {
		c := &creds[i]
		if c.State != store.CredentialActive {
			continue
		}
		out.CredentialID, out.Managed = c.ID, managed(c)
		t := c.CreatedAt
		out.LastRotatedAt = &t
		if every > 0 {
			due := t.Add(every)
			out.NextDueAt = &due
			out.InPolicy = now.Before(due.Add(e.tolerance()))
		}
		break
	}
	list, err := e.st.ListRotations(ctx, store.RotationAgentCredential, agentID, 10)
	if err != nil {
		return nil, err
	}
	for _, r := range list {
		out.Rotations = append(out.Rotations, View(r))
	}
	return out, nil
}

// SetAgentPolicy sets (or with every < 0 removes) the agent's rotation override.
func (e *Engine) SetAgentPolicy(ctx context.Context, agentID string, every, grace time.Duration) error {
	if every < 0 {
		return e.st.DeleteRotationPolicy(ctx, agentID)
	}
	return e.st.PutRotationPolicy(ctx, &store.RotationPolicy{AgentID: agentID,
		IntervalSeconds: int64(every / time.Second), GraceSeconds: int64(grace / time.Second)})
}

// KeyStatus is the rotation status of one algorithm's signing key.
type KeyStatus struct {
	Alg           string         `json:"alg"`
	KID           string         `json:"kid,omitempty"`
	Interval      string         `json:"interval"`
	PublishAhead  string         `json:"publish_ahead"`
	LastRotatedAt *time.Time     `json:"last_rotated_at,omitempty"`
	NextDueAt     *time.Time     `json:"next_due_at,omitempty"`
	InPolicy      bool           `json:"in_policy"`
	Rotations     []RotationView `json:"rotations"`
}

// SigningKeyStatus returns the status of every rotated algorithm.
func (e *Engine) SigningKeyStatus(ctx context.Context) ([]KeyStatus, error) {
	recs, err := e.st.ListSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := e.opts.Now().UTC()
	out := []KeyStatus{}
	for _, alg := range e.opts.Algs {
		ks := KeyStatus{Alg: alg, Interval: e.opts.KeyEvery.String(), PublishAhead: e.opts.PublishAhead.String(), InPolicy: true, Rotations: []RotationView{}}
		ks.KID, _ = e.km.ActiveKID(alg)
		if last, ok := lastActivated(recs, alg); ok {
			ks.LastRotatedAt = &last
			if e.opts.KeyEvery > 0 {
				due := last.Add(e.opts.KeyEvery)
				ks.NextDueAt = &due
				ks.InPolicy = now.Before(due.Add(e.tolerance()))
			}
		}
		list, err := e.st.ListRotations(ctx, store.RotationSigningKey, alg, 5)
		if err != nil {
			return nil, err
		}
		for _, r := range list {
			ks.Rotations = append(ks.Rotations, View(r))
		}
		out = append(out, ks)
	}
	return out, nil
}

// OpenRotations returns the unfinished rotations.
func (e *Engine) OpenRotations(ctx context.Context) ([]RotationView, error) {
	list, err := e.st.OpenRotations(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RotationView, 0, len(list))
	for _, r := range list {
		out = append(out, View(r))
	}
	return out, nil
}

// metrics are the engine's Prometheus metrics.
type metrics struct {
	ticks    prometheus.Counter
	finished *prometheus.CounterVec
	failures *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		ticks: prometheus.NewCounter(prometheus.CounterOpts{Name: "lanyard_rotation_ticks_total", Help: "Rotation scheduler rounds."}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lanyard_rotations_finished_total",
			Help: "Rotations finished, by kind, cause and final step (done, superseded, failed)."}, []string{"kind", "cause", "step"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lanyard_rotation_step_failures_total",
			Help: "Failed rotation steps (each retried with backoff), by kind and step."}, []string{"kind", "step"}),
	}
}

// Collectors returns the engine's metrics: its counters, and the fleet compliance
// (lanyard_rotation_compliance_ratio and lanyard_rotation_credentials{state}) read at
// scrape time from the figures the lease holder published.
func (e *Engine) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.m.ticks, e.m.finished, e.m.failures, &complianceCollector{e: e,
		ratio: prometheus.NewDesc("lanyard_rotation_compliance_ratio", "Share of credentials with a rotation policy that are inside it.", []string{"kind"}, nil),
		count: prometheus.NewDesc("lanyard_rotation_credentials", "Credentials with a rotation policy, by kind and whether inside it.", []string{"kind", "state"}, nil),
	}}
}

type complianceCollector struct {
	e            *Engine
	ratio, count *prometheus.Desc
}

func (c *complianceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.ratio; ch <- c.count }

func (c *complianceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	comp, err := c.e.Compliance(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.ratio, fmt.Errorf("rotation compliance: %w", err))
		return
	}
	for kind, n := range map[string]Counts{store.RotationAgentCredential: comp.AgentCredential, store.RotationSigningKey: comp.SigningKey} {
		ch <- prometheus.MustNewConstMetric(c.ratio, prometheus.GaugeValue, n.Ratio, kind)
		ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(n.InPolicy), kind, "in_policy")
		ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(n.Overdue), kind, "overdue")
	}
}
