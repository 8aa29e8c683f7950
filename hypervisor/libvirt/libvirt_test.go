//go:build libvirt_dlopen

package libvirt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/conformance"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// hostXML is a libvirt test-driver node: a host with capacity and no
// domains. Each test writes its own, so hosts share nothing.
func hostXML(cpus int, memoryMiB int64) string {
	return fmt.Sprintf(`<node>
  <cpu>
    <mhz>2000</mhz>
    <model>x86_64</model>
    <active>%d</active>
    <max>%d</max>
    <nodes>1</nodes>
    <sockets>1</sockets>
    <cores>%d</cores>
    <threads>1</threads>
  </cpu>
  <memory>%d</memory>
</node>
`, cpus, cpus, cpus, memoryMiB*1024)
}

// testURI writes a host file and returns its test:/// URI.
func testURI(t testing.TB, cpus int, memoryMiB int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "host.xml")
	if err := os.WriteFile(path, []byte(hostXML(cpus, memoryMiB)), 0o644); err != nil {
		t.Fatal(err)
	}
	return "test://" + path
}

// newTestDriver opens a driver on a fresh simulated host. Without
// libvirt.so.0 the test fails under CI and is skipped elsewhere.
func newTestDriver(t testing.TB, opts Options) *Driver {
	t.Helper()
	if opts.URI == "" {
		opts.URI = testURI(t, 8, 16384)
	}
	d, err := New(opts)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("libvirt driver: %v (libvirt0 must be installed in CI: scripts/install-deps.sh)", err)
		}
		t.Skipf("libvirt not loadable here: %v", err)
	}
	if err := d.Health(context.Background()); err != nil {
		d.Close()
		t.Fatalf("health of %s: %v", opts.URI, err)
	}
	return d
}

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

var logs sync.Map // *Driver -> *syncBuffer

// raw runs f on the driver's own connection: the test driver's state lives
// in that connection, so "behind Kumoi's back" has to go through it.
func raw(t *testing.T, d hypervisor.Driver, f func(c *lv.Connect) error) {
	t.Helper()
	c, _, release, err := d.(*Driver).acquire("test hook")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := f(c); err != nil {
		t.Fatal(err)
	}
}

// foreignXML is a domain definition without a Kumoi tag.
func foreignXML(domType, name string, cpus int, memoryMiB int64) (string, error) {
	x := &libvirtxml.Domain{
		Type: domType, Name: name,
		Memory: &libvirtxml.DomainMemory{Value: uint(memoryMiB), Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: uint(cpus)},
		OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"}},
	}
	return x.Marshal()
}

func failDial(uri string) (*lv.Connect, error) {
	return nil, errors.New("connection cut by test")
}

func testHooks() conformance.Hooks {
	return conformance.Hooks{
		// virDomainShutdown behind the driver's back: what a guest that
		// powers itself off looks like to libvirt (STOPPED/SHUTDOWN).
		PowerOffFromGuest: func(t *testing.T, d hypervisor.Driver, name string) {
			raw(t, d, func(c *lv.Connect) error {
				dom, err := c.LookupDomainByName(name)
				if err != nil {
					return err
				}
				defer dom.Free()
				return dom.Shutdown()
			})
		},
		DefineForeign: func(t *testing.T, d hypervisor.Driver, name string, cpus int, mem int64, running bool) {
			dd := d.(*Driver)
			dd.mu.Lock()
			domType := dd.domType
			dd.mu.Unlock()
			raw(t, d, func(c *lv.Connect) error {
				x, err := foreignXML(domType, name, cpus, mem)
				if err != nil {
					return err
				}
				dom, err := c.DomainDefineXML(x)
				if err != nil {
					return err
				}
				defer dom.Free()
				if running {
					return dom.Create()
				}
				return nil
			})
		},
		CutConnection: func(t *testing.T, d hypervisor.Driver) {
			dd := d.(*Driver)
			dd.mu.Lock()
			dd.dial = failDial
			gen := dd.gen
			dd.mu.Unlock()
			dd.lost(gen, errors.New("connection cut by test"))
		},
		RestoreConnection: func(t *testing.T, d hypervisor.Driver) {
			dd := d.(*Driver)
			dd.mu.Lock()
			dd.dial = lv.NewConnect
			dd.mu.Unlock()
		},
		DefineForeignNetwork: func(t *testing.T, d hypervisor.Driver, def hypervisor.NetworkDef) {
			raw(t, d, func(c *lv.Connect) error {
				x, err := networkXML(def, "")
				if err != nil {
					return err
				}
				var nx libvirtxml.Network
				if err := nx.Unmarshal(x); err != nil {
					return err
				}
				nx.Metadata = nil // not Kumoi's
				if x, err = nx.Marshal(); err != nil {
					return err
				}
				n, err := c.NetworkDefineXML(x)
				if err != nil {
					return err
				}
				defer n.Free()
				return n.Create()
			})
		},
		VanishNetwork: func(t *testing.T, d hypervisor.Driver, name string) {
			raw(t, d, func(c *lv.Connect) error {
				n, err := c.LookupNetworkByName(name)
				if err != nil {
					return err
				}
				defer n.Free()
				if err := n.Destroy(); err != nil {
					return err
				}
				return n.Undefine()
			})
		},
		VanishVolume: func(t *testing.T, d hypervisor.Driver, name string) {
			raw(t, d, func(c *lv.Connect) error {
				p, err := c.LookupStoragePoolByName(hypervisor.StoragePool)
				if err != nil {
					return err
				}
				defer p.Free()
				v, err := p.LookupStorageVolByName(name)
				if err != nil {
					return err
				}
				defer v.Free()
				return v.Delete(0)
			})
		},
		// The test driver keeps a volume's <backingStore> as given; it
		// reads no file.
		BackingImage: func(t *testing.T, d hypervisor.Driver) string { return "/var/lib/kumoi/storage/images/base.qcow2" },
		Observations: func(t *testing.T, d hypervisor.Driver) []hypervisor.Observation {
			b, _ := logs.Load(d)
			return b.(*syncBuffer).observations(t)
		},
		// The test driver has no guest: it cannot crash or ignore ACPI
		// (Crash, IgnoreShutdown); the event mapping for crashes is
		// covered by TestEventMapping and by the qemu test.
	}
}

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) hypervisor.Driver {
		buf := new(syncBuffer)
		d := newTestDriver(t, Options{
			Host: "test-" + t.Name(), ObservationLog: buf, StorageDir: t.TempDir(),
			ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
		})
		logs.Store(d, buf)
		t.Cleanup(func() { logs.Delete(d) })
		return d
	}, testHooks())
}

func TestCapacityFromNodeAndOverride(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, Options{URI: testURI(t, 6, 3000)})
	defer d.Close()
	s, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUs != 6 || s.MemoryMiB != 3000 {
		t.Fatalf("stats %+v, want the node file's 6 cpus, 3000 MiB", s)
	}
	o := newTestDriver(t, Options{URI: testURI(t, 6, 3000), CPUs: 2, MemoryMiB: 1024})
	defer o.Close()
	if s, err = o.Stats(ctx); err != nil || s.CPUs != 2 || s.MemoryMiB != 1024 {
		t.Fatalf("stats %+v (%v), want the override 2 cpus, 1024 MiB", s, err)
	}
}

// TestHostsAreSeparate: two drivers on two host files share nothing.
func TestHostsAreSeparate(t *testing.T) {
	ctx := context.Background()
	a := newTestDriver(t, Options{})
	defer a.Close()
	b := newTestDriver(t, Options{})
	defer b.Close()
	spec := hypervisor.DomainSpec{Name: "kumoi-x", VMID: "x", Epoch: 1, CPUs: 1, MemoryMiB: 64}
	if err := a.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, spec.Name); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("host b sees host a's domain: %v", err)
	}
}

// TestDomainXML checks what Kumoi defines, as libvirt stores it.
func TestDomainXML(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, Options{ConsoleLogDir: "/var/log/kumoi"})
	defer d.Close()
	specs := []hypervisor.DomainSpec{
		{Name: "kumoi-disk", VMID: "id-disk", Epoch: 3, CPUs: 2, MemoryMiB: 512,
			Boot: hypervisor.Boot{Image: "/images/disk.qcow2"}},
		{Name: "kumoi-raw", VMID: "id-raw", Epoch: 4, CPUs: 1, MemoryMiB: 128,
			Boot: hypervisor.Boot{Image: "/images/disk.img", ImageFormat: hypervisor.ImageRaw}},
		{Name: "kumoi-kernel", VMID: "id-kernel", Epoch: 5, CPUs: 1, MemoryMiB: 96, Cluster: "5d8a2c1e-0f4b-4e7a-9c3d-2b1a0e9f8c7d",
			Boot: hypervisor.Boot{Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd.img", Cmdline: "console=ttyS0 quiet"}},
	}
	for _, s := range specs {
		if err := d.Define(ctx, s); err != nil {
			t.Fatal(err)
		}
		var x string
		raw(t, d, func(c *lv.Connect) error {
			dom, err := c.LookupDomainByName(s.Name)
			if err != nil {
				return err
			}
			defer dom.Free()
			x, err = dom.GetXMLDesc(lv.DOMAIN_XML_INACTIVE)
			return err
		})
		p, err := parseDomainXML(x)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.spec(); !got.Equal(s) {
			t.Errorf("read back %+v, want %+v\n%s", got, s, x)
		}
		var dx libvirtxml.Domain
		if err := dx.Unmarshal(x); err != nil {
			t.Fatal(err)
		}
		if dx.OnCrash != "destroy" || dx.OnPoweroff != "destroy" || dx.OnReboot != "restart" {
			t.Errorf("lifecycle actions %q/%q/%q", dx.OnPoweroff, dx.OnReboot, dx.OnCrash)
		}
		if dx.Features == nil || dx.Features.ACPI == nil {
			t.Errorf("no ACPI: the guest could not hear a graceful shutdown\n%s", x)
		}
		if len(dx.Devices.Serials) == 0 || dx.Devices.Serials[0].Log == nil ||
			dx.Devices.Serials[0].Log.File != "/var/log/kumoi/"+s.Name+".log" {
			t.Errorf("serial console log missing\n%s", x)
		}
		raw(t, d, func(c *lv.Connect) error {
			dom, err := c.LookupDomainByName(s.Name)
			if err != nil {
				return err
			}
			defer dom.Free()
			m, err := dom.GetMetadata(lv.DOMAIN_METADATA_ELEMENT, Namespace, lv.DOMAIN_AFFECT_CONFIG)
			if err != nil {
				return err
			}
			if tg := parseTag(m); tg.VMID != s.VMID || tg.Epoch != s.Epoch || tg.Cluster != s.Cluster {
				return fmt.Errorf("GetMetadata(%s) = %q: tag %+v", Namespace, m, tg)
			}
			return nil
		})
	}
}

// TestFirstConnectRetried: a driver whose hypervisor is not there yet is
// unavailable, and becomes healthy once it can connect.
func TestFirstConnectRetried(t *testing.T) {
	uri := testURI(t, 2, 2048)
	missing := filepath.Join(filepath.Dir(uri[len("test://"):]), "later.xml")
	d, err := New(Options{URI: "test://" + missing, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 20 * time.Millisecond})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("libvirt driver: %v", err)
		}
		t.Skipf("libvirt not loadable: %v", err)
	}
	defer d.Close()
	if err := d.Health(context.Background()); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("health with no host file: %v, want ErrUnavailable", err)
	}
	if _, err := d.List(context.Background()); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("list: %v, want ErrUnavailable", err)
	}
	if err := os.WriteFile(missing, []byte(hostXML(2, 2048)), 0o644); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 10*time.Second, "the driver to be healthy once the host file exists", func() (bool, error) {
		err := d.Health(context.Background())
		return err == nil, err
	})
}

func TestEventMapping(t *testing.T) {
	cases := []struct {
		ev     lv.DomainEventType
		detail int
		kind   hypervisor.EventKind
		reason string
		ok     bool
	}{
		{lv.DOMAIN_EVENT_DEFINED, int(lv.DOMAIN_EVENT_DEFINED_ADDED), hypervisor.EventDefined, "added", true},
		{lv.DOMAIN_EVENT_DEFINED, int(lv.DOMAIN_EVENT_DEFINED_UPDATED), hypervisor.EventDefined, "updated", true},
		{lv.DOMAIN_EVENT_UNDEFINED, int(lv.DOMAIN_EVENT_UNDEFINED_REMOVED), hypervisor.EventUndefined, "removed", true},
		{lv.DOMAIN_EVENT_STARTED, int(lv.DOMAIN_EVENT_STARTED_BOOTED), hypervisor.EventStarted, "booted", true},
		{lv.DOMAIN_EVENT_SUSPENDED, int(lv.DOMAIN_EVENT_SUSPENDED_PAUSED), hypervisor.EventSuspended, "paused", true},
		{lv.DOMAIN_EVENT_SUSPENDED, int(lv.DOMAIN_EVENT_SUSPENDED_IOERROR), hypervisor.EventSuspended, "io-error", true},
		{lv.DOMAIN_EVENT_RESUMED, int(lv.DOMAIN_EVENT_RESUMED_UNPAUSED), hypervisor.EventResumed, "unpaused", true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_SHUTDOWN), hypervisor.EventStopped, hypervisor.StopShutdown, true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_DESTROYED), hypervisor.EventStopped, hypervisor.StopDestroyed, true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_CRASHED), hypervisor.EventStopped, hypervisor.StopCrashed, true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_FAILED), hypervisor.EventStopped, hypervisor.StopFailed, true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_SAVED), hypervisor.EventStopped, hypervisor.StopOther, true},
		{lv.DOMAIN_EVENT_CRASHED, int(lv.DOMAIN_EVENT_CRASHED_PANICKED), hypervisor.EventStopped, hypervisor.StopCrashed, true},
		{lv.DOMAIN_EVENT_PMSUSPENDED, 0, hypervisor.EventSuspended, "pmsuspended", true},
		{lv.DOMAIN_EVENT_SHUTDOWN, int(lv.DOMAIN_EVENT_SHUTDOWN_FINISHED), "", "", false},
	}
	for _, c := range cases {
		kind, reason, ok := event(c.ev, c.detail)
		if kind != c.kind || reason != c.reason || ok != c.ok {
			t.Errorf("event(%d, %d) = %q, %q, %v; want %q, %q, %v", c.ev, c.detail, kind, reason, ok, c.kind, c.reason, c.ok)
		}
	}
	states := []struct {
		s      lv.DomainState
		r      int
		state  hypervisor.State
		reason string
	}{
		{lv.DOMAIN_RUNNING, int(lv.DOMAIN_RUNNING_BOOTED), hypervisor.StateRunning, "booted"},
		{lv.DOMAIN_PAUSED, int(lv.DOMAIN_PAUSED_USER), hypervisor.StatePaused, "user"},
		{lv.DOMAIN_SHUTOFF, int(lv.DOMAIN_SHUTOFF_CRASHED), hypervisor.StateShutoff, "crashed"},
		{lv.DOMAIN_SHUTOFF, int(lv.DOMAIN_SHUTOFF_FAILED), hypervisor.StateShutoff, "failed"},
		{lv.DOMAIN_CRASHED, int(lv.DOMAIN_CRASHED_PANICKED), hypervisor.StateCrashed, "panicked"},
		{lv.DOMAIN_SHUTDOWN, 1, hypervisor.StateShuttingDown, "user"},
	}
	for _, c := range states {
		if st, r := state(c.s, c.r); st != c.state || r != c.reason {
			t.Errorf("state(%d, %d) = %s, %s; want %s, %s", c.s, c.r, st, r, c.state, c.reason)
		}
	}
}

// TestTagXML: the Kumoi element carries the cluster identity; an element
// written by a build older than cluster identity (no <cluster>) reads back
// with an empty cluster, from the domain XML and from GetMetadata alike.
func TestTagXML(t *testing.T) {
	const id = "5d8a2c1e-0f4b-4e7a-9c3d-2b1a0e9f8c7d"
	m, err := tag{VMID: "vm", Epoch: 9, Cluster: id}.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := "<cluster>" + id + "</cluster>"; !bytes.Contains([]byte(m), []byte(want)) {
		t.Fatalf("tag element %s does not hold %s", m, want)
	}
	if got := findTag("<metadata>" + m + "</metadata>"); got.Cluster != id || got.VMID != "vm" || got.Epoch != 9 {
		t.Fatalf("findTag(%s) = %+v", m, got)
	}
	if got := parseTag(`<instance><vm-id>vm</vm-id><epoch>9</epoch><cluster>` + id + `</cluster></instance>`); got.Cluster != id {
		t.Fatalf("parseTag lost the cluster: %+v", got)
	}
	old := `<instance xmlns="https://kumoi.dev/xmlns/domain/1"><vm-id>vm</vm-id><epoch>9</epoch></instance>`
	if got := findTag("<metadata>" + old + "</metadata>"); !got.ok() || got.Cluster != "" || got.Epoch != 9 {
		t.Fatalf("an older build's element read back as %+v, want vm-id vm, epoch 9, no cluster", got)
	}
	if got := parseTag(`<instance><vm-id>vm</vm-id><epoch>9</epoch></instance>`); !got.ok() || got.Cluster != "" {
		t.Fatalf("an older build's element (GetMetadata) read back as %+v", got)
	}
	x, err := domainXML(hypervisor.DomainSpec{Name: "kumoi-old", VMID: "vm", Epoch: 9, CPUs: 1, MemoryMiB: 64}, "test", "", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseDomainXML(x)
	if err != nil {
		t.Fatal(err)
	}
	if p.tag.Cluster != "" || bytes.Contains([]byte(x), []byte("<cluster>")) {
		t.Fatalf("a spec without a cluster wrote one:\n%s", x)
	}
}
