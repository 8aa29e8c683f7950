package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumoi/kumoi/resource"
)

// stateCollector exports the cluster's state as this controller holds it,
// computed at each scrape: whether it leads, hosts by state, VMs by
// phase, objects by kind (deploy/prometheus/kumoi-alerts.yml alerts on
// them). Every controller exports them; alerts take the leader's
// (kumoi_leader == 1) or the maximum.
type stateCollector struct {
	b                           Backend
	leader, hosts, vms, objects *prometheus.Desc
}

func newStateCollector(b Backend) *stateCollector {
	return &stateCollector{
		b:       b,
		leader:  prometheus.NewDesc("kumoi_leader", "1 while this controller is the Raft leader, else 0.", nil, nil),
		hosts:   prometheus.NewDesc("kumoi_hosts", "Hosts by state (ready, down, left, draining), as this controller's state holds them.", []string{"state"}, nil),
		vms:     prometheus.NewDesc("kumoi_vms", "VMs by phase, as this controller's state holds them.", []string{"phase"}, nil),
		objects: prometheus.NewDesc("kumoi_objects", "Objects by kind, as this controller's state holds them.", []string{"kind"}, nil),
	}
}

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.leader
	ch <- s.hosts
	ch <- s.vms
	ch <- s.objects
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	leader := 0.0
	if s.b.IsLeader() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(s.leader, prometheus.GaugeValue, leader)
	st := s.b.FSM().State()
	hosts := map[string]int{}
	if objs, err := st.List(nil, resource.KindHost, nil); err == nil {
		for _, o := range objs {
			if hs, err := resource.DecodeStatus[resource.HostStatus](o); err == nil {
				hosts[hs.State]++
			}
		}
	}
	for _, state := range resource.HostStates {
		ch <- prometheus.MustNewConstMetric(s.hosts, prometheus.GaugeValue, float64(hosts[state]), state)
	}
	for phase, n := range st.VMPhaseCounts(resource.VMPhases) {
		ch <- prometheus.MustNewConstMetric(s.vms, prometheus.GaugeValue, float64(n), phase)
	}
	for _, k := range resource.Kinds() {
		ch <- prometheus.MustNewConstMetric(s.objects, prometheus.GaugeValue, float64(st.Count(k.Kind)), string(k.Kind))
	}
}
