package testcluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Default ports of a node (those of `kumoi agent`).
const (
	APIPort    = 7400
	RaftPort   = 7401
	GossipPort = 7402
)

// MaxNodes is how many nodes one cluster may have: the addresses
// BaseIP … BaseIP+MaxNodes-1 are reserved for it.
const MaxNodes = 8

// DefaultBaseIP is the first node's address of the first cluster. Further
// clusters running at the same time (other test packages, other processes)
// take 127.0.1.11, 127.0.2.11, … . On Linux all of 127.0.0.0/8 reaches the
// loopback interface without any configuration.
const DefaultBaseIP = "127.0.0.11"

// addrBlock is a range of loopback addresses reserved for one cluster by an
// exclusive flock on a lock file, so that clusters of concurrently running
// test binaries never share addresses.
type addrBlock struct {
	base net.IP
	lock *os.File
}

func (b *addrBlock) ip(i int) string {
	ip := make(net.IP, 4)
	copy(ip, b.base.To4())
	ip[3] += byte(i)
	return ip.String()
}

func (b *addrBlock) release() {
	if b.lock != nil {
		b.lock.Close() // drops the flock
		b.lock = nil
	}
}

// reserveBlock reserves base if given (waiting up to wait for another
// holder to let go), or else the first free block 127.0.N.11.
func reserveBlock(base string, wait time.Duration) (*addrBlock, error) {
	if base != "" {
		ip := net.ParseIP(base).To4()
		if ip == nil || !ip.IsLoopback() || int(ip[3])+MaxNodes > 255 {
			return nil, fmt.Errorf("BaseIP %q must be an IPv4 loopback address with room for %d nodes after it (e.g. %s)", base, MaxNodes, DefaultBaseIP)
		}
		deadline := time.Now().Add(wait)
		for {
			b, err := tryBlock(ip)
			if err == nil {
				return b, nil
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("addresses from %s are in use: %w", base, err)
			}
			time.Sleep(100 * time.Millisecond) // waiting for another process: nothing to poll
		}
	}
	var lastErr error
	for n := 0; n < 64; n++ {
		ip := net.IPv4(127, 0, byte(n), 11).To4()
		b, err := tryBlock(ip)
		if err == nil {
			return b, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("no free block of loopback addresses for a test cluster (127.0.0-63.11): %w", lastErr)
}

func tryBlock(ip net.IP) (*addrBlock, error) {
	path := filepath.Join(os.TempDir(), "kumoi-testcluster-"+ip.String()+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is held by another test cluster", path)
	}
	b := &addrBlock{base: ip, lock: f}
	// A leftover process (not ours) may still hold the ports.
	for i := 0; i < MaxNodes; i++ {
		if err := portsFree(b.ip(i)); err != nil {
			b.release()
			return nil, err
		}
	}
	return b, nil
}

// portsFree checks that the node ports can be bound on ip.
func portsFree(ip string) error {
	for _, p := range []int{APIPort, RaftPort, GossipPort} {
		addr := net.JoinHostPort(ip, strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("port %s is in use: %w", addr, err)
		}
		ln.Close()
	}
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(GossipPort)))
	if err != nil {
		return fmt.Errorf("udp port %s:%d is in use: %w", ip, GossipPort, err)
	}
	pc.Close()
	return nil
}

// ReserveIPs reserves a block of loopback addresses for an in-process
// cluster (e.g. controllers started with cluster.StartAgent) until the test
// ends, and returns the first n of them. Like New, it never hands out an
// address that another test cluster holds.
func ReserveIPs(tb testing.TB, n int) []string {
	tb.Helper()
	if n < 1 || n > MaxNodes {
		tb.Fatalf("testcluster: ReserveIPs(%d): between 1 and %d addresses", n, MaxNodes)
	}
	b, err := reserveBlock("", 0)
	if err != nil {
		tb.Fatalf("testcluster: %v", err)
	}
	tb.Cleanup(b.release)
	out := make([]string, n)
	for i := range out {
		out[i] = b.ip(i)
	}
	return out
}
