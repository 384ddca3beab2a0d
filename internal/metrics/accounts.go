package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// AccountCount is one route's accounts, as the gauges read them at a scrape.
type AccountCount struct {
	Route string
	// Stored is how many accounts the token store holds for the route;
	// StoredKnown is false when the store could not say.
	Stored      int
	StoredKnown bool
	// Held is how many of them this replica holds in memory.
	Held int
}

var (
	accountsDesc = prometheus.NewDesc("authsidecar_accounts",
		"Accounts of the route in the token store (every replica's).", []string{"route"}, nil)
	accountsHeldDesc = prometheus.NewDesc("authsidecar_accounts_in_memory",
		"Accounts of the route this replica holds in memory (bounded; idle ones are dropped first).", []string{"route"}, nil)
)

// accountsCollector reads the counts at each scrape: accounts are data that
// other replicas change, so a gauge set here would go stale.
type accountsCollector struct{ count func() []AccountCount }

func (c accountsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- accountsDesc
	ch <- accountsHeldDesc
}

func (c accountsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.count() {
		if a.StoredKnown {
			ch <- prometheus.MustNewConstMetric(accountsDesc, prometheus.GaugeValue, float64(a.Stored), a.Route)
		}
		ch <- prometheus.MustNewConstMetric(accountsHeldDesc, prometheus.GaugeValue, float64(a.Held), a.Route)
	}
}

// CountAccounts registers the accounts gauges, which call count at each
// scrape; it is called once.
func (m *Metrics) CountAccounts(count func() []AccountCount) {
	m.registry.MustRegister(accountsCollector{count: count})
}
