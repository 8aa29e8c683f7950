package script

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/resource"
)

func TestNetworksImagesVolumesInScripts(t *testing.T) {
	s := apitest.New(t)
	cl, err := client.New(client.Config{Addrs: []string{s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cl.Networks().Create(ctx, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24"}, map[string]string{"env": "prod"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Images().Create(ctx, "debian", resource.ImageSpec{File: "debian.qcow2"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Volumes().Create(ctx, "v1", resource.VolumeSpec{SizeMiB: 1024, Persistent: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.VMs().Create(ctx, "web", resource.VMSpec{CPUs: 1, MemoryMiB: 256, Power: resource.PowerStopped,
		NICs:  []resource.NIC{{Network: "net1", IP: "10.10.0.9"}},
		Disks: []resource.Disk{{Image: "debian", SizeMiB: 2048}}}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := runScript(t, Env{Client: cl, Timeout: time.Minute}, `
n = network("net1")
print(type(n), n.cidr, n.gateway, n.mode, n.allocated, n.capacity, n.hosts, n.labels["env"], n.spec.dhcp)
print([x.name for x in networks("env=prod")], [x.name for x in networks("env=dev")])
print(n == networks()[0], str(n))
i = image("debian")
print(type(i), i.format, i.source, i.sha256 == "", [x.name for x in images()])
w = vm("web")
print(w.addresses, len(w.macs), w.macs[0].startswith("52:54:00:"), w.nics[0].network, w.nics[0].ip)
print([(d.volume, d.image, d.size_mib) for d in w.disks], w.spec.nics[0].ip)
print(sorted([v.name for v in volumes()]))
v = volume("v1")
print(type(v), v.size, v.persistent, v.phase, v.attached_to, v.host, v.image)
r = v.attach(w)
print(r == w, [d.volume for d in w.disks], v.attached_to)
print(v.detach().name, v.attached_to, [d.volume for d in vm("web").disks])
print(v.detach())
print(v.resize("2GiB").size)
d = volume("web-disk0")
print(d.image, d.persistent, d.attached_to)
v.set_labels({"tier": "db"})
print(volume("v1").labels)
v.delete()
print([x.name for x in volumes()])
db = create_vm("db", networks=["net1", "net1:10.10.0.99"], disks=[{"image": "debian", "size": "1GiB"}])
print(db.addresses[1], db.disks[0].volume, db.disks[0].size_mib, len(db.nics))
`)
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, out)
	}
	want := `network 10.10.0.0/24 10.10.0.1 nat 1 253 {} prod True
["net1"] []
True network("net1", cidr=10.10.0.0/24, allocated=1/253)
image qcow2 debian.qcow2 True ["debian"]
["10.10.0.9"] 1 True net1 10.10.0.9
[("web-disk0", "debian", 2048)] 10.10.0.9
["v1", "web-disk0"]
volume 1GiB True pending None None None
True ["web-disk0", "v1"] web
web None ["web-disk0"]
None
2GiB
debian False web
{"tier": "db"}
["web-disk0"]
10.10.0.99 db-disk0 1024 2
`
	if out != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out, want)
	}

	// Errors say what is wrong.
	for src, msg := range map[string]string{
		`network("nope")`:                    `network "nope" not found`,
		`volume("v9")`:                       `volume "v9" not found`,
		`volume("web-disk0").attach(3)`:      `want a vm or a VM name`,
		`volume("web-disk0").resize("1MiB")`: "cannot shrink",
		`network("net1").delete()`:           "web",
		`image("debian").delete()`:           "in use",
	} {
		_, err := runScript(t, Env{Client: cl, Timeout: time.Minute}, src)
		wantError(t, err, msg)
	}
}

func TestVolumeEvents(t *testing.T) {
	m := NewEventMapper()
	vol := func(phase string) *resource.Object {
		return &resource.Object{Kind: resource.KindVolume, Name: "v1", Spec: []byte(`{"size_mib":1}`), Status: []byte(`{"phase":"` + phase + `"}`)}
	}
	var got []string
	for _, ev := range []resource.Event{
		{Index: 1, Type: "created", Kind: "volume", Name: "v1", Object: vol("pending")},
		{Index: 2, Type: "updated", Kind: "volume", Name: "v1", Object: vol("ready")},
		{Index: 3, Type: "updated", Kind: "volume", Name: "v1", Object: vol("missing")},
		{Index: 4, Type: "created", Kind: "network", Name: "n1", Object: &resource.Object{Kind: resource.KindNetwork, Name: "n1"}},
	} {
		for _, e := range m.Events(ev) {
			got = append(got, e.Type)
		}
	}
	if want := "volume.created,volume.pending,volume.updated,volume.ready,volume.updated,volume.missing,network.created"; strings.Join(got, ",") != want {
		t.Fatalf("events %v, want %s", got, want)
	}
	for _, p := range []string{"volume.missing", "network", "image.deleted", "network.*", "volume.ready"} {
		if _, err := NewMatcher([]string{p}); err != nil {
			t.Errorf("NewMatcher(%q): %v", p, err)
		}
	}
	if _, err := NewMatcher([]string{"network.down"}); err == nil || !strings.Contains(err.Error(), "network.created") {
		t.Errorf("network.down: %v", err)
	}
}

// Policies subscribe to events of networks, images and volumes like to
// those of VMs and hosts.
func TestPolicyOnVolumeAndNetworkEvents(t *testing.T) {
	ctx := context.Background()
	out := &syncBuffer{}
	p, err := LoadPolicy(ctx, "storage", `
events = ["volume.missing", "network", "image.deleted"]

def on_event(ev):
    o = ev.object
    if ev.kind == "volume":
        print(ev.type, o.name, o.phase, o.reason)
    else:
        print(ev.type, type(o), o.name)
`, Env{Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ResourceKinds(); len(got) != 3 || got[0] != resource.KindVolume || got[1] != resource.KindNetwork || got[2] != resource.KindImage {
		t.Errorf("ResourceKinds() = %v", got)
	}
	if !p.Wants("volume.missing") || p.Wants("volume.ready") || !p.Wants("network.updated") || !p.Wants("image.deleted") || p.Wants("image.created") {
		t.Error("Wants is wrong")
	}
	vol := &resource.Object{Kind: resource.KindVolume, Name: "v1", Spec: []byte(`{"size_mib":1}`),
		Status: []byte(`{"phase":"missing","reason":"removed outside Kumoi"}`)}
	net := &resource.Object{Kind: resource.KindNetwork, Name: "net1", Spec: []byte(`{"cidr":"10.0.0.0/24"}`), Status: []byte(`{}`)}
	for _, ev := range []Event{
		{Type: "volume.missing", Index: 5, Kind: resource.KindVolume, Name: "v1", Object: vol},
		{Type: "network.created", Index: 6, Kind: resource.KindNetwork, Name: "net1", Object: net},
	} {
		if err := p.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if want := "volume.missing v1 missing removed outside Kumoi\nnetwork.created network net1\n"; out.String() != want {
		t.Errorf("handler printed %q, want %q", out.String(), want)
	}
}
