//go:build libvirt_dlopen

package libvirt

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	lv "libvirt.org/go/libvirt"

	"github.com/kumoi/kumoi/hypervisor"
)

// The test driver cannot migrate: no CapLiveMigration, and every Migrator
// method says ErrUnsupported.
func TestTestDriverHasNoLiveMigration(t *testing.T) {
	d := newTestDriver(t, Options{})
	defer d.Close()
	if d.Capabilities().Has(hypervisor.CapLiveMigration) {
		t.Fatalf("test:/// driver advertises %s: %s", hypervisor.CapLiveMigration, d.Capabilities())
	}
	ctx := context.Background()
	spec := hypervisor.DomainSpec{Name: "kumoi-mig", VMID: "mig", Epoch: 1, CPUs: 1, MemoryMiB: 64}
	if err := d.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	var m hypervisor.Migrator = d
	_, err1 := m.PrepareIncoming(ctx, spec)
	_, err2 := m.MigrateOut(ctx, spec.Name, "qemu+tcp://peer/system#", hypervisor.MigrateOptions{})
	_, err3 := m.Incoming(ctx, spec.Name)
	err4 := m.FinishIncoming(ctx, spec.Name)
	err5 := m.AbortIncoming(ctx, spec.Name)
	for i, err := range []error{err1, err2, err3, err4, err5} {
		if !errors.Is(err, hypervisor.ErrUnsupported) {
			t.Errorf("method %d: %v, want ErrUnsupported", i+1, err)
		}
	}
	// Nothing was touched: the domain still runs.
	if in, err := d.Get(ctx, spec.Name); err != nil || in.State != hypervisor.StateRunning {
		t.Fatalf("after the refused calls: %+v, %v", in, err)
	}
}

func TestLiveMigrationCapability(t *testing.T) {
	for _, c := range []struct {
		uri, migrationURI string
		want              bool
	}{
		{"qemu:///system", "", false},
		{"qemu:///system", "qemu+tcp://hv1/system", true},
		{"qemu+tcp://hv1/system", "qemu+tcp://hv1/system", true},
		{"test:///default", "qemu+tcp://hv1/system", false},
		{"xen:///system", "qemu+tcp://hv1/system", false},
	} {
		if got := capabilitiesFor(c.uri, c.migrationURI).Has(hypervisor.CapLiveMigration); got != c.want {
			t.Errorf("capabilitiesFor(%q, %q) has live migration: %v, want %v", c.uri, c.migrationURI, got, c.want)
		}
	}
	for uri, want := range map[string]string{
		"qemu:///system":                                 "",
		"qemu:///session":                                "",
		"test:///default":                                "",
		"qemu+tcp://hv1/system":                          "qemu+tcp://hv1/system",
		"qemu+ssh://root@hv1/system?keyfile=/k":          "qemu+ssh://root@hv1/system?keyfile=/k",
		"qemu+unix:///system?socket=/tmp/d/libvirt-sock": "qemu+unix:///system?socket=/tmp/d/libvirt-sock",
		"qemu+unix:///system":                            "",
	} {
		if got := defaultMigrationURI(uri); got != want {
			t.Errorf("defaultMigrationURI(%q) = %q, want %q", uri, got, want)
		}
	}
}

// A qemu driver without a migration URI does not offer live migration and
// says why; a bad migration option fails New.
func TestMigrationOptions(t *testing.T) {
	d := &Driver{uri: "qemu:///system", caps: capabilitiesFor("qemu:///system", "")}
	err := d.needMigration("prepare incoming x")
	if !errors.Is(err, hypervisor.ErrUnsupported) || !strings.Contains(err.Error(), "--migration-uri") {
		t.Fatalf("needMigration without a URI: %v", err)
	}
	for _, opts := range []Options{
		{URI: "test:///default", MigrationURI: "qemu:///system"},
		{URI: "test:///default", MigrationURI: "xen+tcp://h/system"},
		{URI: "test:///default", MigrationAddress: "udp://1.2.3.4"},
		{URI: "test:///default", MigrationAddress: "1.2.3.4:99999"},
	} {
		if d, err := New(opts); err == nil {
			d.Close()
			t.Errorf("New(%+v) accepted bad migration options", opts)
		}
	}
}

func TestMigrationURIEncoding(t *testing.T) {
	for _, c := range []struct {
		t    migrationTarget
		want string
	}{
		{migrationTarget{LibvirtURI: "qemu+tcp://hv2/system"}, "qemu+tcp://hv2/system#"},
		{migrationTarget{LibvirtURI: "qemu+tcp://hv2/system", DataURI: "10.0.0.2"},
			"qemu+tcp://hv2/system#migrate=tcp%3A%2F%2F10.0.0.2"},
		{migrationTarget{LibvirtURI: "qemu+tls://hv2.example/system", DataURI: "tcp://[fd00::2]:49152", Backing: true},
			"qemu+tls://hv2.example/system#backing=1&migrate=tcp%3A%2F%2F%5Bfd00%3A%3A2%5D%3A49152"},
		{migrationTarget{LibvirtURI: "qemu+unix:///system?socket=/tmp/b/sock/libvirt-sock", DataURI: "127.0.0.1:49300", Listen: "127.0.0.1"},
			"qemu+unix:///system?socket=/tmp/b/sock/libvirt-sock#listen=127.0.0.1&migrate=tcp%3A%2F%2F127.0.0.1%3A49300"},
	} {
		s, err := c.t.encode()
		if err != nil || s != c.want {
			t.Errorf("encode(%+v) = %q, %v; want %q", c.t, s, err, c.want)
			continue
		}
		got, err := decodeMigrationTarget(s)
		want := c.t
		if want.DataURI != "" {
			want.DataURI, _ = normalMigrationAddress(want.DataURI)
		}
		if err != nil || got != want {
			t.Errorf("decode(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	// A bare libvirt URI (no fragment) and unknown keys are accepted.
	if got, err := decodeMigrationTarget("qemu+ssh://root@hv3/system"); err != nil || got.LibvirtURI != "qemu+ssh://root@hv3/system" || got.DataURI != "" || got.Backing {
		t.Errorf("decode of a bare URI: %+v, %v", got, err)
	}
	if got, err := decodeMigrationTarget("qemu+tcp://hv3/system#future=x&backing=0"); err != nil || got.Backing {
		t.Errorf("decode with an unknown key: %+v, %v", got, err)
	}
	for _, bad := range []string{
		"",
		"#migrate=tcp%3A%2F%2F1.2.3.4",
		"qemu:///system#",
		"test+tcp://h/default#",
		"qemu+tcp://hv2/system#migrate=udp%3A%2F%2F1.2.3.4",
		"qemu+tcp://hv2/system#migrate=1.2.3.4%3A0",
		"qemu+tcp://hv2/system#backing=yes",
		"qemu+tcp://hv2/system#listen=hv2.example",
		"qemu+tcp://hv2/system#%zz",
		"qemu+tcp://hv2/system#migrate=" + strings.Repeat("a", MaxMigrationURI),
	} {
		if got, err := decodeMigrationTarget(bad); err == nil {
			t.Errorf("decode(%q) = %+v, accepted", bad, got)
		}
	}
	if s, err := (migrationTarget{LibvirtURI: "qemu+tcp://" + strings.Repeat("h", MaxMigrationURI) + "/system"}).encode(); err == nil {
		t.Errorf("encoded a URI of %d bytes", len(s))
	}
	for in, want := range map[string]string{
		"10.0.0.2":             "tcp://10.0.0.2",
		"10.0.0.2:49152":       "tcp://10.0.0.2:49152",
		"tcp://hv2.example":    "tcp://hv2.example",
		"tcp://hv2.example/":   "tcp://hv2.example",
		"[fd00::1]:4000":       "tcp://[fd00::1]:4000",
		"tcp://[fd00::1]":      "tcp://[fd00::1]",
		"tcp://127.0.0.1:1234": "tcp://127.0.0.1:1234",
	} {
		if got, err := normalMigrationAddress(in); err != nil || got != want {
			t.Errorf("normalMigrationAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"tcp://10.0.0.2:49152": "10.0.0.2", "tcp://[fd00::1]": "fd00::1", "tcp://hv2.example": ""} {
		if got := listenIP(in); got != want {
			t.Errorf("listenIP(%q) = %q, want %q", in, got, want)
		}
	}
	if s, err := (migrationTarget{LibvirtURI: "qemu+tcp://hv2/system", Listen: "hv2"}).encode(); err == nil {
		t.Errorf("encoded a listen address that is not an IP: %q", s)
	}
	for _, bad := range []string{"", "tcp://", "rdma://1.2.3.4", "1.2.3.4:", "1.2.3.4:x", "tcp://u@h", "tcp://h/p", "tcp://h?x=1", "fd00::1"} {
		if got, err := normalMigrationAddress(bad); err == nil {
			t.Errorf("normalMigrationAddress(%q) = %q, accepted", bad, got)
		}
	}
}

func TestMigrateFlags(t *testing.T) {
	base := lv.MIGRATE_LIVE | lv.MIGRATE_PEER2PEER | lv.MIGRATE_PERSIST_DEST | lv.MIGRATE_UNDEFINE_SOURCE | lv.MIGRATE_ABORT_ON_ERROR
	for _, c := range []struct {
		name string
		plan storagePlan
		want lv.DomainMigrateFlags
	}{
		{"shared storage", storagePlan{Disks: []string{"vdb"}, Overlays: true, TargetBacking: true}, base},
		{"copy, no volumes", storagePlan{Copy: true}, base},
		{"copy, plain volumes", storagePlan{Copy: true, Disks: []string{"vdb", "vdc"}}, base | lv.MIGRATE_NON_SHARED_DISK},
		{"copy, overlays, target without the backing", storagePlan{Copy: true, Disks: []string{"vdb"}, Overlays: true}, base | lv.MIGRATE_NON_SHARED_DISK},
		{"copy, not all overlays, target with backing", storagePlan{Copy: true, Disks: []string{"vdb", "vdc"}, TargetBacking: true}, base | lv.MIGRATE_NON_SHARED_DISK},
		{"copy, overlays on a backing the target has", storagePlan{Copy: true, Disks: []string{"vdb"}, Overlays: true, TargetBacking: true}, base | lv.MIGRATE_NON_SHARED_INC},
	} {
		if got := migrateFlags(c.plan); got != c.want {
			t.Errorf("%s: flags %#x, want %#x", c.name, got, c.want)
		}
	}

	tgt := migrationTarget{LibvirtURI: "qemu+tcp://hv2/system", DataURI: "tcp://10.0.0.2:49152", Listen: "10.0.0.2"}
	p := migrateParams(tgt, hypervisor.MigrateOptions{CopyStorage: true, BandwidthMiBs: 100, MaxDowntime: time.Second},
		storagePlan{Copy: true, Disks: []string{"vdb"}})
	if !p.URISet || p.URI != "tcp://10.0.0.2:49152" || !p.ListenAddressSet || p.ListenAddress != "10.0.0.2" || !p.BandwidthSet || p.Bandwidth != 100 ||
		!p.MigrateDisksSet || len(p.MigrateDisks) != 1 || p.MigrateDisks[0] != "vdb" {
		t.Errorf("params: %+v", p)
	}
	p = migrateParams(migrationTarget{LibvirtURI: "qemu+tcp://hv2/system"}, hypervisor.MigrateOptions{}, storagePlan{Disks: []string{"vdb"}})
	if p.URISet || p.ListenAddressSet || p.BandwidthSet || p.MigrateDisksSet {
		t.Errorf("params without options: %+v", p)
	}
}

// planStorage reads the volumes (vdb...) of a domain's XML, not its boot
// image (vda) nor read-only disks, and whether they are overlays.
func TestPlanStorage(t *testing.T) {
	d := &Driver{}
	x := `<domain type='qemu'><name>x</name><devices>
<disk type='file' device='disk'><source file='/img/boot.qcow2'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><source file='/vol/a.qcow2'/><backingStore type='file'><format type='qcow2'/><source file='/img/base.qcow2'/></backingStore><target dev='vdb' bus='virtio'/></disk>
<disk type='file' device='disk'><source file='/vol/b.qcow2'/><backingStore type='file'><source file='/img/base.qcow2'/></backingStore><target dev='vdc' bus='virtio'/></disk>
<disk type='file' device='disk'><source file='/img/ro.raw'/><target dev='vdd' bus='virtio'/><readonly/></disk>
<disk type='file' device='cdrom'><source file='/img/cd.iso'/><target dev='hdc' bus='ide'/></disk>
</devices></domain>`
	p, err := d.planStorage(nil, x, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Disks, ",") != "vdb,vdc" || !p.Overlays || !p.Copy || !p.TargetBacking {
		t.Fatalf("plan: %+v", p)
	}
	if f := migrateFlags(p); f&lv.MIGRATE_NON_SHARED_INC == 0 {
		t.Fatalf("overlays on a backing the target has: flags %#x, want NON_SHARED_INC", f)
	}
	p, err = d.planStorage(nil, `<domain type='qemu'><name>x</name><devices>
<disk type='file' device='disk'><source file='/img/boot.qcow2'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>`, true, true)
	if err != nil || len(p.Disks) != 0 || p.Overlays {
		t.Fatalf("plan without volumes: %+v, %v", p, err)
	}
	if f := migrateFlags(p); f&(lv.MIGRATE_NON_SHARED_INC|lv.MIGRATE_NON_SHARED_DISK) != 0 {
		t.Fatalf("no volumes to copy: flags %#x", f)
	}
}
