package agent

import (
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

var (
	registryOnce sync.Once
	registry     *prometheus.Registry
)

// Registry returns the process-wide Prometheus registry: Go runtime and
// process collectors, Kumoi's own metrics, and raft's and memberlist's
// go-metrics (as kumoi_raft_*, kumoi_memberlist_*) through a sink.
func Registry() *prometheus.Registry {
	registryOnce.Do(func() {
		registry = prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: registry, Expiration: time.Minute})
		if err == nil {
			mc := gometrics.DefaultConfig("kumoi")
			mc.EnableHostname = false
			mc.EnableRuntimeMetrics = false
			mc.EnableServiceLabel = false
			_, _ = gometrics.NewGlobal(mc, sink)
		}
	})
	return registry
}
