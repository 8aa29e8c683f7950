package worker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/resource"
)

// capacity is the host's capacity: the configured override, else what the
// driver reports.
func (w *Worker) capacity(ctx context.Context) (int, int64) {
	cpus, mem := w.cfg.CPUs, w.cfg.MemoryMiB
	if cpus == 0 || mem == 0 {
		if st, err := w.drv.Stats(ctx); err == nil {
			if cpus == 0 {
				cpus = st.CPUs
			}
			if mem == 0 {
				mem = st.MemoryMiB
			}
		}
	}
	return cpus, mem
}

// meta is the worker's gossip metadata as of now.
func (w *Worker) meta(ctx context.Context, ready bool) membership.Meta {
	cpus, mem := w.capacity(ctx)
	w.mu.Lock()
	leaving, cluster, foreign := w.leaving, w.cluster, w.foreign
	w.mu.Unlock()
	m := membership.Meta{ID: w.cfg.NodeID, Role: membership.RoleWorker, Cluster: cluster, CPUs: cpus, MemoryMiB: mem,
		Driver: w.cfg.DriverName, Ready: ready, Labels: w.cfg.Labels, Leaving: leaving, ForeignCount: len(foreign),
		FenceAfterMS: w.cfg.FenceAfter.Milliseconds(), ImageDir: w.cfg.ImageDir, Migrate: w.migrationModes()}
	// Name as many foreign domains as fit, with room for the flags that
	// come and go (ready, leaving) and for the capacity to grow. The image
	// directory goes first, if it fits (else the API cannot check boot
	// paths against it; the worker still does).
	probe := m
	probe.Ready, probe.Leaving, probe.CPUs, probe.MemoryMiB = true, true, 1<<20, 1<<50
	if b, err := json.Marshal(probe); err != nil || len(b) > membership.MaxMetaBytes {
		m.ImageDir, probe.ImageDir = "", ""
	}
	for _, n := range foreign {
		if len(m.Foreign) == resource.MaxForeignDomains {
			break
		}
		probe.Foreign = append(m.Foreign[:len(m.Foreign):len(m.Foreign)], n)
		if b, err := json.Marshal(probe); err != nil || len(b) > membership.MaxMetaBytes {
			break
		}
		m.Foreign = probe.Foreign
	}
	return m
}

// advertise updates the worker's gossip metadata (ready or not) and sends
// it to the pool.
func (w *Worker) advertise(ctx context.Context, ready bool) error {
	w.mu.Lock()
	g := w.gossip
	w.mu.Unlock()
	return w.advertiseOn(ctx, g, ready)
}

func (w *Worker) advertiseOn(ctx context.Context, g *memberlist.Memberlist, ready bool) error {
	if err := w.delegate.SetMeta(w.meta(ctx, ready)); err != nil {
		return err
	}
	if g != nil {
		return g.UpdateNode(2 * time.Second)
	}
	return nil
}

// joinGossip joins the pool (not ready yet: the first reconciliation
// removes the domains that are no longer this host's before it says
// ready) and keeps healing partitions until ctx ends.
func (w *Worker) joinGossip(ctx context.Context) error {
	d, err := membership.NewDelegate(w.meta(ctx, false), w.ctrls, nil, w.cfg.Logger.Named("gossip"))
	if err != nil {
		return err
	}
	w.delegate = d
	g, err := membership.Create(membership.Options{
		Name: w.cfg.GossipName, BindIP: w.cfg.BindIP, Port: w.cfg.GossipPort, Logger: w.cfg.Logger.Named("gossip"),
		Security: w.cfg.GossipSecurity,
	}, d)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.gossip = g
	w.mu.Unlock()
	if len(w.cfg.Join) > 0 {
		// A worker that remembers its cluster is refused by (and
		// refuses) agents of another: it does not start then.
		if err := membership.JoinCluster(g, d, w.cfg.Join, w.logger, ctx.Done()); err != nil {
			if errors.Is(err, membership.ErrOtherCluster) {
				return w.joinRefusal(err)
			}
			return ctx.Err()
		}
	}
	w.logger.Info("in the gossip pool; reconciling before reporting ready")
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		membership.Reconnect(g, w.ctrls, w.cfg.GossipName, w.cfg.Join, 2*time.Second, ctx.Done())
	}()
	return nil
}

// client returns an API client over the controllers seen in gossip.
func (w *Worker) client() *client.Client {
	addrs := w.controllerAddrs()
	w.mu.Lock()
	defer w.mu.Unlock()
	key := strings.Join(addrs, ",")
	if key == "" {
		return nil
	}
	if key != w.apiAddrs || w.api == nil {
		// Dial from the worker's own address, so that a partition of that
		// address cuts the API as it cuts gossip.
		dialer := &net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(w.cfg.BindIP)}}
		hc := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second,
			TLSClientConfig: w.cfg.tlsClient}}
		c, err := client.New(client.Config{Addrs: addrs, HTTPClient: hc, Timeout: 5 * time.Second, RetryDeadline: time.Second, TLS: w.cfg.tlsClient, Token: w.cfg.Token})
		if err != nil {
			return nil
		}
		w.api, w.apiAddrs = c, key
	}
	return w.api
}
