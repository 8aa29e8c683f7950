package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/conformance"
	"github.com/kumoi/kumoi/hypervisor/sim"
)

// syncBuffer is a bytes.Buffer safe for the driver's writes and the test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) observations(t *testing.T) []hypervisor.Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []hypervisor.Observation
	dec := json.NewDecoder(bytes.NewReader(s.b.Bytes()))
	for dec.More() {
		var o hypervisor.Observation
		if err := dec.Decode(&o); err != nil {
			t.Fatalf("observation log: %v", err)
		}
		out = append(out, o)
	}
	return out
}

var logs sync.Map // *sim.Driver -> *syncBuffer

func newSim(opts sim.Options) func(t *testing.T) hypervisor.Driver {
	return func(t *testing.T) hypervisor.Driver {
		buf := new(syncBuffer)
		opts.ObservationLog = buf
		opts.Host = "sim-" + t.Name()
		d := sim.New(opts)
		logs.Store(d, buf)
		t.Cleanup(func() { logs.Delete(d) })
		return d
	}
}

func simHooks() conformance.Hooks {
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	return conformance.Hooks{
		PowerOffFromGuest: func(t *testing.T, d hypervisor.Driver, name string) {
			must(t, d.(*sim.Driver).PowerOffFromGuest(name))
		},
		Crash: func(t *testing.T, d hypervisor.Driver, name string) {
			must(t, d.(*sim.Driver).Crash(name))
		},
		DefineForeign: func(t *testing.T, d hypervisor.Driver, name string, cpus int, mem int64, running bool) {
			must(t, d.(*sim.Driver).DefineForeign(name, cpus, mem, running))
		},
		IgnoreShutdown: func(t *testing.T, d hypervisor.Driver, name string) {
			must(t, d.(*sim.Driver).IgnoreShutdown(name, true))
		},
		CutConnection:     func(t *testing.T, d hypervisor.Driver) { d.(*sim.Driver).SetUnavailable(true) },
		RestoreConnection: func(t *testing.T, d hypervisor.Driver) { d.(*sim.Driver).SetUnavailable(false) },
		DefineForeignNetwork: func(t *testing.T, d hypervisor.Driver, def hypervisor.NetworkDef) {
			must(t, d.(*sim.Driver).DefineForeignNetwork(def))
		},
		VanishNetwork: func(t *testing.T, d hypervisor.Driver, name string) {
			must(t, d.(*sim.Driver).VanishNetwork(name))
		},
		VanishVolume: func(t *testing.T, d hypervisor.Driver, name string) {
			must(t, d.(*sim.Driver).VanishVolume(name))
		},
		SlowMigrations: func(t *testing.T, d hypervisor.Driver) { d.(*sim.Driver).SetMigrationLatency(10 * time.Second) },
		BackingImage:   func(t *testing.T, d hypervisor.Driver) string { return "/var/lib/kumoi/storage/images/base.qcow2" },
		Observations: func(t *testing.T, d hypervisor.Driver) []hypervisor.Observation {
			b, _ := logs.Load(d)
			return b.(*syncBuffer).observations(t)
		},
	}
}

func TestConformance(t *testing.T) {
	conformance.Run(t, newSim(sim.Options{CPUs: 8, MemoryMiB: 8192}), simHooks())
}

// TestConformanceLatency runs the suite with boot and shutdown latency.
func TestConformanceLatency(t *testing.T) {
	conformance.Run(t, newSim(sim.Options{BootLatency: 5 * time.Millisecond, ShutdownLatency: 5 * time.Millisecond}), simHooks())
}

// TestConformanceFewCapabilities runs the suite against a driver that lacks
// most optional capabilities, so the ErrUnsupported paths are exercised.
func TestConformanceFewCapabilities(t *testing.T) {
	caps := hypervisor.NewCapabilities(hypervisor.CapEvents)
	conformance.Run(t, newSim(sim.Options{Capabilities: caps}), simHooks())
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func spec(name string) hypervisor.DomainSpec {
	return hypervisor.DomainSpec{Name: hypervisor.DomainName(name), VMID: "id-" + name, Epoch: 1, CPUs: 2, MemoryMiB: 512}
}

func TestNoCapacityCheckOnStart(t *testing.T) {
	d := sim.New(sim.Options{CPUs: 2, MemoryMiB: 1024})
	defer d.Close()
	for _, n := range []string{"a", "b", "c"} {
		s := spec(n)
		if err := d.Define(ctx(t), s); err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx(t), s.Name); err != nil {
			t.Fatalf("start %s: %v (sim mirrors libvirt: no capacity check)", n, err)
		}
	}
	st, err := d.Stats(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := hypervisor.HostStats{CPUs: 2, MemoryMiB: 1024, AllocatedCPUs: 6, AllocatedMemoryMiB: 1536, Domains: 3, ActiveDomains: 3}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

func TestFaults(t *testing.T) {
	d := sim.New(sim.Options{})
	defer d.Close()
	s := spec("f")
	boom := errors.New("boom")

	d.InjectFault(sim.OpDefine, sim.Fault{Err: boom, Times: 2})
	for i := 0; i < 2; i++ {
		if err := d.Define(ctx(t), s); !errors.Is(err, boom) {
			t.Fatalf("define %d: %v, want boom", i, err)
		}
	}
	if err := d.Define(ctx(t), s); err != nil {
		t.Fatalf("define after 2 faults: %v", err)
	}

	d.InjectFault(sim.OpStart, sim.Fault{})
	for i := 0; i < 3; i++ {
		if err := d.Start(ctx(t), s.Name); !errors.Is(err, hypervisor.ErrUnavailable) {
			t.Fatalf("start %d: %v, want ErrUnavailable (default fault, always)", i, err)
		}
	}
	if in, _ := d.Get(ctx(t), s.Name); in.State != hypervisor.StateShutoff {
		t.Fatalf("a faulted start changed the state: %+v", in)
	}

	d.InjectFault(sim.OpStart, sim.Fault{Hang: true})
	c, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := d.Start(c, s.Name); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging start: %v, want deadline exceeded", err)
	}

	// ClearFaults releases a hanging call.
	errc := make(chan error, 1)
	go func() { errc <- d.Start(context.Background(), s.Name) }()
	d.ClearFaults()
	select {
	case err := <-errc:
		_ = err // released: either the fault's error or, if it entered after the clear, success
	case <-time.After(10 * time.Second):
		t.Fatal("ClearFaults did not release a hanging call")
	}
	if err := d.Start(ctx(t), s.Name); err != nil {
		t.Fatalf("start after ClearFaults: %v", err)
	}
}

func TestBootLatencyHonoursContext(t *testing.T) {
	d := sim.New(sim.Options{BootLatency: time.Hour})
	defer d.Close()
	s := spec("slow")
	if err := d.Define(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := d.Start(c, s.Name); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start: %v, want deadline exceeded", err)
	}
	if in, _ := d.Get(ctx(t), s.Name); in.State != hypervisor.StateShutoff {
		t.Fatalf("abandoned start left %+v", in)
	}
}

func TestEventOverflowBecomesResync(t *testing.T) {
	d := sim.New(sim.Options{EventBuffer: 4})
	defer d.Close()
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := d.Define(ctx(t), spec(n)); err != nil {
			t.Fatal(err)
		}
	}
	// Nobody read: the queue overflowed. A resync comes first (after at most
	// the one event the delivery goroutine already held), then the events
	// queued after the overflow.
	var got []hypervisor.Event
	for len(got) < 2 {
		select {
		case ev := <-d.Events():
			got = append(got, ev)
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far %+v", got)
		}
	}
	if got[0].Kind != hypervisor.EventResync && got[1].Kind != hypervisor.EventResync {
		t.Fatalf("first events %+v, want a resync among them", got)
	}
}

func TestCloseEndsDomains(t *testing.T) {
	buf := new(syncBuffer)
	d := sim.New(sim.Options{ObservationLog: buf, Host: "h1"})
	s := spec("x")
	if err := d.Define(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx(t), s.Name); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	obs := buf.observations(t)
	if len(obs) != 2 || obs[1].Event != hypervisor.ObserveStop || obs[1].Host != "h1" {
		t.Fatalf("observations %+v: want start and stop on close", obs)
	}
}

// TestStartNeedsNetworkAndVolumes: as on libvirt, Define takes any
// network and disk path; Start fails (ErrMissingResource) when a NIC's
// network is gone or inactive, or a disk in the pool is not a volume.
func TestStartNeedsNetworkAndVolumes(t *testing.T) {
	d := sim.New(sim.Options{StorageDir: "/pool"})
	defer d.Close()
	net := hypervisor.NetworkDef{Name: "kumoi-n1", Mode: hypervisor.NetModeNAT, Bridge: "kb-n1",
		CIDR: "10.1.0.0/24", Gateway: "10.1.0.1", DHCP: true}
	vol, err := d.EnsureVolume(ctx(t), hypervisor.VolumeDef{Name: "v1.qcow2", SizeMiB: 10})
	if err != nil || vol.Path != "/pool/v1.qcow2" {
		t.Fatalf("EnsureVolume: %+v, %v; want path /pool/v1.qcow2", vol, err)
	}
	s := spec("dev")
	s.NICs = []hypervisor.DomainNIC{{Network: net.Name, MAC: "52:54:00:00:00:01"}}
	s.Disks = []hypervisor.DomainDisk{{Path: vol.Path}, {Path: "/elsewhere/boot.img", Format: hypervisor.ImageRaw}}
	if err := d.Define(ctx(t), s); err != nil {
		t.Fatalf("Define with a network not there yet: %v", err)
	}
	if err := d.Start(ctx(t), s.Name); !errors.Is(err, hypervisor.ErrMissingResource) {
		t.Fatalf("Start without the network: %v, want ErrMissingResource", err)
	}
	if err := d.EnsureNetwork(ctx(t), net); err != nil {
		t.Fatal(err)
	}
	if err := d.StopNetwork(net.Name); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx(t), s.Name); !errors.Is(err, hypervisor.ErrMissingResource) {
		t.Fatalf("Start with the network inactive: %v, want ErrMissingResource", err)
	}
	if nets, _ := d.ListNetworks(ctx(t)); len(nets) != 1 || nets[0].Active {
		t.Fatalf("networks %+v, want one inactive", nets)
	}
	if err := d.EnsureNetwork(ctx(t), net); err != nil { // starts it again
		t.Fatal(err)
	}
	if err := d.VanishVolume("v1.qcow2"); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx(t), s.Name); !errors.Is(err, hypervisor.ErrMissingResource) {
		t.Fatalf("Start without the volume: %v, want ErrMissingResource", err)
	}
	if _, err := d.EnsureVolume(ctx(t), hypervisor.VolumeDef{Name: "v1.qcow2", SizeMiB: 10}); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx(t), s.Name); err != nil {
		t.Fatalf("Start with network and volume: %v", err)
	}
	// Running domains keep running when their network vanishes.
	if err := d.VanishNetwork(net.Name); err != nil {
		t.Fatal(err)
	}
	if in, _ := d.Get(ctx(t), s.Name); in.State != hypervisor.StateRunning {
		t.Fatalf("domain after its network vanished: %+v", in)
	}
}

// TestNetworkChangeWhileInUse: DHCP hosts change live; a structural change
// of a network used by an active domain is refused.
func TestNetworkChangeWhileInUse(t *testing.T) {
	d := sim.New(sim.Options{})
	defer d.Close()
	net := hypervisor.NetworkDef{Name: "kumoi-n1", Mode: hypervisor.NetModeNAT, Bridge: "kb-n1",
		CIDR: "10.1.0.0/24", Gateway: "10.1.0.1", DHCP: true}
	if err := d.EnsureNetwork(ctx(t), net); err != nil {
		t.Fatal(err)
	}
	other := net
	other.Name = "kumoi-n2"
	other.CIDR, other.Gateway = "10.2.0.0/24", "10.2.0.1"
	if err := d.EnsureNetwork(ctx(t), other); !errors.Is(err, hypervisor.ErrExists) {
		t.Fatalf("second network on bridge kb-n1: %v, want ErrExists", err)
	}
	s := spec("user")
	s.NICs = []hypervisor.DomainNIC{{Network: net.Name, MAC: "52:54:00:00:00:01"}}
	if err := d.Define(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx(t), s.Name); err != nil {
		t.Fatal(err)
	}
	net.Hosts = []hypervisor.DHCPHost{{MAC: "52:54:00:00:00:01", IP: "10.1.0.5"}}
	if err := d.EnsureNetwork(ctx(t), net); err != nil {
		t.Fatalf("live DHCP host change: %v", err)
	}
	net.MTU = 9000
	if err := d.EnsureNetwork(ctx(t), net); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("MTU change while in use: %v, want ErrInvalidState", err)
	}
	if err := d.Destroy(ctx(t), s.Name); err != nil {
		t.Fatal(err)
	}
	if err := d.EnsureNetwork(ctx(t), net); err != nil {
		t.Fatalf("MTU change once unused: %v", err)
	}
}

func TestNetStoreFaults(t *testing.T) {
	d := sim.New(sim.Options{})
	defer d.Close()
	boom := errors.New("boom")
	d.InjectFault(sim.OpEnsureVolume, sim.Fault{Err: boom, Times: 1})
	if _, err := d.EnsureVolume(ctx(t), hypervisor.VolumeDef{Name: "v", SizeMiB: 1}); !errors.Is(err, boom) {
		t.Fatalf("EnsureVolume: %v, want boom", err)
	}
	d.InjectFault(sim.OpListNetworks, sim.Fault{Err: boom, Times: 1})
	if _, err := d.ListNetworks(ctx(t)); !errors.Is(err, boom) {
		t.Fatalf("ListNetworks: %v, want boom", err)
	}
	d.SetUnavailable(true)
	if _, err := d.ListVolumes(ctx(t)); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("ListVolumes while cut off: %v", err)
	}
}
