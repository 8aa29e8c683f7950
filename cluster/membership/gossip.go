package membership

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Defaults of gossip, controllers and workers alike.
const (
	DefaultGossipPort = 7402
	// A member is probed every interval (round robin), a probe waits
	// timeout for its ack (then asks others to probe it), and a suspect
	// that does not refute is declared dead after suspicion-mult
	// intervals; with a multiplier of 2, memberlist waits for no
	// confirmation by another member (docs/ha.md). Tuned so that a dead
	// worker is down within 3 s on a LAN (docs/benchmarks.md).
	DefaultProbeInterval = 300 * time.Millisecond
	DefaultProbeTimeout  = 150 * time.Millisecond
	DefaultSuspicionMult = 2
)

// Options configures an agent's gossip.
type Options struct {
	Name   string // memberlist name, unique in the pool
	BindIP string // bound and advertised
	Port   int    // TCP and UDP

	// Failure detection; zero values take the defaults above.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int

	// Security: the gossip keyring and TLS streams (zero: plain gossip).
	Security Security

	Logger hclog.Logger
}

// Create starts memberlist on o's address with d as its delegate (events,
// alive and merge checks too). Its TCP connections leave from o.BindIP,
// like its UDP packets. With o.Security's keys, every packet and stream
// is encrypted and unencrypted ones are refused; with its TLS
// configurations, streams are TLS (tlsTransport).
func Create(o Options, d *Delegate) (*memberlist.Memberlist, error) {
	if err := o.Security.Validate(); err != nil {
		return nil, err
	}
	kr, err := o.Security.keyring()
	if err != nil {
		return nil, err
	}
	mc := config(o)
	mc.Delegate, mc.Events, mc.Alive, mc.Merge = d, d, d, d
	if kr != nil {
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{mc.BindAddr},
		BindPort:  mc.BindPort,
		Logger:    mc.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("gossip on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	bt := &boundTransport{NetTransport: nt, local: net.ParseIP(mc.BindAddr)}
	mc.Transport = bt
	if o.Security.TLS() {
		logger := o.Logger
		if logger == nil {
			logger = hclog.NewNullLogger()
		}
		mc.Transport = newTLSTransport(bt, o.Security, logger)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = mc.Transport.Shutdown()
		return nil, fmt.Errorf("start gossip on %s: %w", net.JoinHostPort(o.BindIP, fmt.Sprint(o.Port)), err)
	}
	return ml, nil
}

// config builds a memberlist configuration from o.
func config(o Options) *memberlist.Config {
	if o.ProbeInterval == 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.SuspicionMult == 0 {
		o.SuspicionMult = DefaultSuspicionMult
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = o.Name
	mc.BindAddr = o.BindIP
	mc.BindPort = o.Port
	mc.AdvertiseAddr = o.BindIP
	mc.AdvertisePort = o.Port
	mc.ProbeInterval = o.ProbeInterval
	mc.ProbeTimeout = o.ProbeTimeout
	mc.SuspicionMult = o.SuspicionMult
	mc.GossipInterval = 100 * time.Millisecond
	mc.PushPullInterval = 15 * time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.Logger = o.Logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	mc.LogOutput = nil
	return mc
}

// boundTransport is memberlist's NetTransport, except that its TCP
// connections (push-pull, fallback probes) leave from the agent's own
// address, like its UDP packets do: a partition made with iptables on that
// address then cuts gossip both ways.
type boundTransport struct {
	*memberlist.NetTransport
	local net.IP
}

func (t *boundTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *boundTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: t.local}}
	return d.Dial("tcp", a.Addr)
}

// Join joins the pool through the join addresses, retrying with a backoff
// (200 ms doubling to 2 s) and logging why, until one answers or done is
// closed. It reports whether it joined; with no addresses it returns at
// once (false).
func Join(ml *memberlist.Memberlist, join []string, logger hclog.Logger, done <-chan struct{}) bool {
	return JoinCluster(ml, nil, join, logger, done) == nil
}

// JoinCluster is Join for an agent that knows its cluster and must not
// keep knocking at another one: it returns nil once joined; an error
// wrapping ErrOtherCluster (naming both identities) when an attempt
// reached no agent of this cluster and d refused an agent of another one
// (the --join addresses belong to another cluster; with a nil d it keeps
// retrying instead); or ErrJoinAborted when done is closed first. memberlist flattens the delegate's errors
// into text, so the refusal is taken from d.
func JoinCluster(ml *memberlist.Memberlist, d *Delegate, join []string, logger hclog.Logger, done <-chan struct{}) error {
	backoff := 200 * time.Millisecond
	for {
		if len(join) == 0 {
			return ErrJoinAborted
		}
		var before uint64
		if d != nil {
			before, _ = d.refusalCount()
		}
		n, err := ml.Join(join)
		if n > 0 {
			logger.Info("joined the gossip pool", "contacted", n)
			return nil
		}
		if d != nil {
			if after, refusal := d.refusalCount(); after > before && refusal != nil {
				return refusal
			}
		}
		logger.Warn("could not join the gossip pool yet; retrying", "join", join, "error", err)
		select {
		case <-done:
			return ErrJoinAborted
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// ErrJoinAborted: JoinCluster was stopped (or had no address) before it
// joined.
var ErrJoinAborted = errors.New("gossip join aborted")

// Reconnect heals gossip after a partition. memberlist stops probing a
// member it declared dead, so two sides that lost each other never merge
// again by themselves: like serf's reconnect, keep trying the failed
// members (and the join addresses when nobody is left), every interval,
// until done is closed.
func Reconnect(ml *memberlist.Memberlist, t *Table, self string, join []string, every time.Duration, done <-chan struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		addrs := t.DeadAddrs()
		if !t.AnyAlive(self) {
			addrs = append(addrs, join...)
		}
		if len(addrs) > 0 {
			_, _ = ml.Join(addrs)
		}
	}
}
