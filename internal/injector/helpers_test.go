package injector

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

func prometheusRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

func itoa(n int32) string { return strconv.Itoa(int(n)) }
