package oauth

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	issued  *prometheus.CounterVec
	refused *prometheus.CounterVec
	latency *prometheus.HistogramVec
	intro   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanyard_tokens_issued_total", Help: "Access tokens issued, by signing algorithm.",
		}, []string{"alg"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanyard_tokens_refused_total", Help: "Token requests refused, by the check that failed.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lanyard_token_issue_duration_seconds",
			Help:    "Time to issue an access token inside the server.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, 1},
		}, []string{"endpoint"}),
		intro: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanyard_introspections_total", Help: "Token introspections, by result.",
		}, []string{"active"}),
	}
	if reg != nil {
		reg.MustRegister(m.issued, m.refused, m.latency, m.intro)
	}
	return m
}
