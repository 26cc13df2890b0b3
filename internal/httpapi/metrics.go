package httpapi

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanyardhq/lanyard/internal/audit"
)

// AgentCounter counts agents by status.
type AgentCounter interface {
	CountAgentsByStatus(ctx context.Context) (map[string]int64, error)
}

// agentsCollector exports lanyard_agents{status}, read from the database at scrape time
// so every replica reports the fleet as it is.
type agentsCollector struct {
	st   AgentCounter
	desc *prometheus.Desc
}

// NewAgentsCollector returns a collector of agents by status.
func NewAgentsCollector(st AgentCounter) prometheus.Collector {
	return &agentsCollector{st: st, desc: prometheus.NewDesc("lanyard_agents", "Registered agents by status.", []string{"status"}, nil)}
}

func (c *agentsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *agentsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.st.CountAgentsByStatus(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, s := range statuses {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), s)
	}
}

// NewAuditCollector exports the audit writer's counters.
func NewAuditCollector(l *audit.Log) prometheus.Collector {
	return &auditCollector{l: l,
		appended: prometheus.NewDesc("lanyard_audit_events_appended_total", "Audit events committed.", nil, nil),
		batches:  prometheus.NewDesc("lanyard_audit_batches_total", "Audit group commits.", nil, nil),
		failed:   prometheus.NewDesc("lanyard_audit_events_failed_total", "Audit events that could not be committed.", nil, nil),
		queue:    prometheus.NewDesc("lanyard_audit_queue_length", "Audit events waiting for the writer.", nil, nil),
	}
}

type auditCollector struct {
	l                                *audit.Log
	appended, batches, failed, queue *prometheus.Desc
}

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.appended
	ch <- c.batches
	ch <- c.failed
	ch <- c.queue
}

func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.l.Stats()
	ch <- prometheus.MustNewConstMetric(c.appended, prometheus.CounterValue, float64(s.Appended))
	ch <- prometheus.MustNewConstMetric(c.batches, prometheus.CounterValue, float64(s.Batches))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(s.QueueLen))
}
