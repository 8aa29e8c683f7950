// Package promutil registers Prometheus collectors the way Kumoi's
// components share a registry: dev mode runs several controllers in one
// process, and each asks for the same metrics.
package promutil

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterOrReuse registers c with reg (nil: not registered) and returns
// it, or, when reg already holds a collector of the same metrics, that
// one, so that every caller records into the same series. It panics if
// reg holds a different metric under one of the names, a programming
// error like prometheus.MustRegister's.
func RegisterOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("cannot register metric: %v", err))
}
