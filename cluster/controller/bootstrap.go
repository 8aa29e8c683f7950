package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/resource"
)

// bootstrapLoop bootstraps raft once --bootstrap-expect controllers are
// seen, unless one of them already belongs to a cluster (then the leader
// adds us as a voter).
func (c *Controller) bootstrapLoop() {
	defer c.wg.Done()
	for {
		wait := c.members.Changed()
		done, err := c.tryBootstrap()
		if done {
			return
		}
		if err != nil {
			c.logger.Info("not bootstrapping yet", "reason", err)
		}
		select {
		case <-c.shutdownCh:
			return
		case <-wait:
		case <-time.After(time.Second):
		}
	}
}

func (c *Controller) tryBootstrap() (done bool, err error) {
	if _, lid := c.raft.LeaderWithID(); lid != "" {
		return true, nil // someone already leads us
	}
	if last := c.raft.LastIndex(); last > 0 {
		return true, nil
	}
	peers := c.members.AliveControllers()
	if len(peers) < c.cfg.BootstrapExpect {
		return false, fmt.Errorf("%d of %d expected controllers seen", len(peers), c.cfg.BootstrapExpect)
	}
	var servers []raft.Server
	for _, p := range peers {
		if p.Meta.Expect != 0 && p.Meta.Expect != c.cfg.BootstrapExpect {
			return false, fmt.Errorf("controller %s has --bootstrap-expect %d, this one %d: they must agree", p.Meta.ID, p.Meta.Expect, c.cfg.BootstrapExpect)
		}
		if p.Meta.ID != c.cfg.NodeID {
			st, err := c.peerStatus(context.Background(), p.Meta.API)
			if err != nil {
				return false, fmt.Errorf("cannot ask %s whether it already has a cluster: %v", p.Meta.ID, err)
			}
			if st.LeaderID != "" || st.LastLogIndex > 0 {
				c.logger.Info("a peer already belongs to a cluster; waiting to be added as a voter", "peer", p.Meta.ID)
				return true, nil
			}
			if err := c.raftCertOK(p); err != nil { // with TLS: a server certificate of the cluster CA (gossip.go)
				return false, fmt.Errorf("controller %s: %w", p.Meta.ID, err)
			}
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.Meta.ID), Address: raft.ServerAddress(p.Meta.Raft)})
	}
	c.logger.Info("bootstrapping the raft cluster", "servers", len(servers))
	if err := c.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && err != raft.ErrCantBootstrap {
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	return true, nil
}

// peerStatus asks another controller's API for its GET /v1/status, within
// a second (or ctx).
func (c *Controller) peerStatus(ctx context.Context, apiAddr string) (*resource.Status, error) {
	var st resource.Status
	if err := c.peerGet(ctx, apiAddr, "/v1/status", time.Second, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// peerGet GETs path from another controller's API into v, within timeout
// (or ctx), dialing from this node's --bind address.
func (c *Controller) peerGet(ctx context.Context, apiAddr, path string, timeout time.Duration, v any) error {
	if apiAddr == "" {
		return fmt.Errorf("no API address advertised")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.APIURL(apiAddr)+path, nil)
	if err != nil {
		return err
	}
	if tok := c.peerToken(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c.peerClientOnce.Do(c.newPeerClient)
	resp, err := c.peerClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("GET %s: %s: the cluster has ACLs on; give this controller --token (KUMOI_TOKEN) with cluster:read, or --acl-initial-management (docs/security.md)", path, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// peerToken is the token of this controller's calls to other controllers.
func (c *Controller) peerToken() string {
	if c.cfg.Token != "" {
		return c.cfg.Token
	}
	return c.cfg.ACLInitialManagement
}

// newPeerClient makes the client that asks other controllers' APIs,
// dialing from this node's --bind address.
func (c *Controller) newPeerClient() {
	d := &net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.cfg.BindIP)}}
	c.peerClient = &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second,
		TLSClientConfig: c.PeerTLSConfig()}}
}
