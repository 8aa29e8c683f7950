// Package deploy holds what an operator deploys beside the kumoi binary —
// Prometheus alert rules (prometheus/), a Grafana dashboard (grafana/) —
// and the tests that check them against a real controller's metrics.
package deploy
