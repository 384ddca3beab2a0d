package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var cooldownDesc = prometheus.NewDesc("authsidecar_rate_limit_cooldown_seconds",
	"Seconds left of the longest pause a vendor asked of the route (any of its accounts), as this replica knows it; 0 when none.",
	[]string{"route"}, nil)

// cooldownCollector reads the routes' cool-downs at each scrape.
type cooldownCollector struct {
	left func() map[string]time.Duration
}

func (c cooldownCollector) Describe(ch chan<- *prometheus.Desc) { ch <- cooldownDesc }

func (c cooldownCollector) Collect(ch chan<- prometheus.Metric) {
	for route, left := range c.left() {
		ch <- prometheus.MustNewConstMetric(cooldownDesc, prometheus.GaugeValue, max(left, 0).Seconds(), route)
	}
}

// WatchCooldowns registers the cool-down gauge, which calls left at each
// scrape; it is called once.
func (m *Metrics) WatchCooldowns(left func() map[string]time.Duration) {
	m.registry.MustRegister(cooldownCollector{left: left})
}

// RateLimited counts a call a route's limiter held back: reason cooldown or
// limit, action waited or refused.
func (m *Metrics) RateLimited(route, reason, action string) {
	m.rateLimited.WithLabelValues(route, reason, action).Inc()
}
