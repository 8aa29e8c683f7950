package controller

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// raftHello starts the line each side of a Raft connection sends first:
// "KUMOI-RAFT/1 <cluster id>\n" (an empty id when the node knows none).
// Its first byte, 'K', is never the first byte of a Raft RPC (0–3), so a
// connection from an older node without the greeting is still told apart
// and accepted.
const raftHello = "KUMOI-RAFT/1 "

// raftHelloTimeout bounds the greeting of an incoming connection.
const raftHelloTimeout = 5 * time.Second

// ErrOtherClusterPeer: a Raft peer belongs to another cluster.
var ErrOtherClusterPeer = errors.New("the raft peer belongs to another cluster")

// streamLayer is Raft's TCP stream layer with two changes: it dials from
// the node's own --bind address (a partition made with iptables on that
// address then cuts Raft traffic both ways), and both ends of every
// connection exchange their cluster identity first: a node refuses a peer
// of another cluster, naming both identities. With TLS, every connection
// is mutual TLS first: both ends present a server certificate of the
// cluster's CA (tlsutil.RoleServer), and a peer without one is refused at
// the handshake, before it can send a Raft RPC.
type streamLayer struct {
	ln      net.Listener
	local   net.IP
	cluster func() string
	// admitted reports whether this node takes part in Raft yet: a new
	// node refuses every incoming connection until it is admitted
	// (admission.go), so that a leader that still lists its id as a server
	// cannot make it a follower with an empty log.
	admitted func() bool
	logger   hclog.Logger
	tls      *tlsConfigs // nil: plain TCP

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once

	refusedMu sync.Mutex
	refused   map[string]time.Time // peer address → when last logged
}

func newStreamLayer(ln net.Listener, local net.IP, cluster func() string, admitted func() bool, logger hclog.Logger) *streamLayer {
	return newStreamLayerTLS(ln, local, cluster, admitted, logger, nil)
}

// newStreamLayerTLS is newStreamLayer over mutual TLS (tlsc nil: plain).
func newStreamLayerTLS(ln net.Listener, local net.IP, cluster func() string, admitted func() bool, logger hclog.Logger, tlsc *tlsConfigs) *streamLayer {
	l := &streamLayer{ln: ln, local: local, cluster: cluster, admitted: admitted, logger: logger, tls: tlsc,
		conns: make(chan net.Conn), done: make(chan struct{}), refused: map[string]time.Time{}}
	go l.acceptLoop()
	return l
}

// Accept returns the next incoming connection whose greeting passed.
func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (l *streamLayer) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

// Addr is the listener's address.
func (l *streamLayer) Addr() net.Addr { return l.ln.Addr() }

// acceptLoop greets every incoming connection on a goroutine of its own,
// so that a slow or silent peer holds up no other.
func (l *streamLayer) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.logger.Warn("raft: accept failed", "error", err)
			select {
			case <-l.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		go l.greetIncoming(c)
	}
}

func (l *streamLayer) greetIncoming(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(raftHelloTimeout))
	if l.tls != nil {
		// The handshake comes before the admission check, so that a
		// leader can check a new node's certificate (tlsutil.VerifyPeer)
		// before it makes it a voter.
		tc := tls.Server(c, l.tls.raftServer)
		if err := tc.Handshake(); err != nil {
			l.logTLSRefusal(c.RemoteAddr(), err)
			c.Close()
			return
		}
		c = tc
	}
	if l.admitted != nil && !l.admitted() {
		l.logNotAdmitted(c.RemoteAddr().String())
		c.Close()
		return
	}
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	if first[0] == raftHello[0] {
		theirs, err := readHello(br)
		if err != nil {
			l.logger.Warn("raft: bad greeting; closing the connection", "peer", c.RemoteAddr(), "error", err)
			c.Close()
			return
		}
		mine := l.cluster()
		if err := checkPeerCluster(mine, theirs, c.RemoteAddr().String()); err != nil {
			l.logRefusal(c.RemoteAddr().String(), mine, theirs)
			_, _ = c.Write([]byte(raftHello + mine + "\n"))
			c.Close()
			return
		}
		if _, err := c.Write([]byte(raftHello + mine + "\n")); err != nil {
			c.Close()
			return
		}
	}
	_ = c.SetDeadline(time.Time{})
	select {
	case l.conns <- &bufferedConn{Conn: c, r: br}:
	case <-l.done:
		c.Close()
	}
}

// Dial connects to a peer from the node's own address and exchanges
// greetings; a peer of another cluster is an error naming both.
func (l *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: l.local}}
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = raftHelloTimeout
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if l.tls != nil {
		tc := tls.Client(c, l.tls.peer)
		if err := tc.Handshake(); err != nil {
			l.logTLSRefusal(c.RemoteAddr(), err)
			c.Close()
			return nil, fmt.Errorf("raft peer %s: TLS handshake: %w", addr, err)
		}
		c = tc
	}
	mine := l.cluster()
	if _, err := c.Write([]byte(raftHello + mine + "\n")); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	theirs, err := readHello(br)
	if err != nil {
		c.Close()
		why := "a node of a build without cluster identity, or it refused this one"
		if l.tls != nil {
			why = "it refused this node (its certificate?) or belongs to another cluster"
		}
		return nil, fmt.Errorf("raft peer %s did not greet back (%s): %w", addr, why, err)
	}
	if err := checkPeerCluster(mine, theirs, string(addr)); err != nil {
		l.logRefusal(string(addr), mine, theirs)
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return &bufferedConn{Conn: c, r: br}, nil
}

// readHello reads a greeting line and returns the cluster id in it.
func readHello(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	id, ok := strings.CutPrefix(strings.TrimSuffix(string(line), "\n"), raftHello)
	if !ok || len(id) > 64 {
		return "", fmt.Errorf("not a Kumoi raft greeting: %q", line)
	}
	return id, nil
}

// checkPeerCluster: two known identities must be equal.
func checkPeerCluster(mine, theirs, peer string) error {
	if mine == "" || theirs == "" || mine == theirs {
		return nil
	}
	return fmt.Errorf("%w: %s is in cluster %s, this node in cluster %s", ErrOtherClusterPeer, peer, theirs, mine)
}

func (l *streamLayer) logRefusal(peer, mine, theirs string) {
	if l.firstIn30s(peer) {
		l.logger.Error("refusing a raft peer of another cluster (is it in this cluster's configuration by mistake? see kumoi cluster status)",
			"peer", peer, "peer_cluster", theirs, "cluster", mine)
	}
}

// logTLSRefusal logs a failed TLS handshake, once in 30s per peer host.
func (l *streamLayer) logTLSRefusal(peer net.Addr, err error) {
	host := peer.String()
	if h, _, serr := net.SplitHostPort(host); serr == nil {
		host = h
	}
	if l.firstIn30s("tls " + host) {
		l.logger.Error("refusing a raft peer: the TLS handshake failed (Raft needs a server certificate of this cluster's CA on both ends: kumoi tls cert create --server)",
			"peer", peer.String(), "error", err)
	}
}

func (l *streamLayer) logNotAdmitted(peer string) {
	if l.firstIn30s(peer) {
		l.logger.Warn("refusing a raft connection: this node is new and has not checked yet that its id is free in the cluster", "peer", peer)
	}
}

// firstIn30s rate-limits the logs about one peer: true at most every 30 s.
func (l *streamLayer) firstIn30s(peer string) bool {
	l.refusedMu.Lock()
	defer l.refusedMu.Unlock()
	if last, seen := l.refused[peer]; seen && time.Since(last) < 30*time.Second {
		return false
	}
	l.refused[peer] = time.Now()
	return true
}

// bufferedConn reads through the reader that read the greeting, so that
// nothing it buffered is lost.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
