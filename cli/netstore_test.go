package cli

import (
	"strings"
	"testing"

	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/resource"
)

var sha = strings.Repeat("ab", 32)

func TestNetworkCommands(t *testing.T) {
	s := apitest.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "empty list", args: []string{"network", "list", "-o", "json"}, exact: "[]\n"},
		{name: "create", args: []string{"network", "create", "net1", "--cidr", "10.10.0.0/24", "--gateway", "10.10.0.1", "--mode", "nat", "--label", "env=prod"},
			stdout: []string{"NAME   CIDR", "net1   10.10.0.0/24   10.10.0.1   nat    yes    -     0/253"}},
		{name: "create bridge", args: []string{"net", "create", "lan", "--cidr", "192.168.1.0/24", "--mode", "bridge", "--bridge", "br0", "--dhcp=false",
			"--mtu", "9000", "--reserve", "192.168.1.2-192.168.1.9", "--reserve", "192.168.1.254", "-o", "json"},
			stdout: []string{`"mode": "bridge"`, `"bridge": "br0"`, `"dhcp": false`, `"mtu": 9000`, `"from": "192.168.1.2"`, `"to": "192.168.1.9"`, `"from": "192.168.1.254"`, `"capacity": 244`}},
		{name: "duplicate", args: []string{"network", "create", "net1", "--cidr", "10.11.0.0/24"}, code: 1, stderr: `kumoi: network "net1" already exists`},
		{name: "overlap", args: []string{"network", "create", "net3", "--cidr", "10.10.0.128/25"}, code: 1, stderr: "kumoi: spec.cidr: "},
		{name: "bad cidr", args: []string{"network", "create", "n9", "--cidr", "10.0.0.0/33"}, code: 1, stderr: "kumoi: spec.cidr: must be a prefix"},
		{name: "gateway outside", args: []string{"network", "create", "n9", "--cidr", "10.9.0.0/24", "--gateway", "10.8.0.1"}, code: 1, stderr: "kumoi: spec.gateway: 10.8.0.1 is outside the network 10.9.0.0/24"},
		{name: "missing cidr", args: []string{"network", "create", "n9"}, code: 2, stderr: "kumoi: missing --cidr"},
		{name: "bad mode", args: []string{"network", "create", "n9", "--cidr", "10.9.0.0/24", "--mode", "vxlan"}, code: 2, stderr: `kumoi: invalid --mode "vxlan": use nat, isolated or bridge`},
		{name: "bad reserve", args: []string{"network", "create", "n9", "--cidr", "10.9.0.0/24", "--reserve", "-x"}, code: 2, stderr: `kumoi: invalid --reserve "-x": write an address or a range FROM-TO`},
		{name: "bad mtu", args: []string{"network", "create", "n9", "--cidr", "10.9.0.0/24", "--mtu", "big"}, code: 2, stderr: `kumoi: invalid --mtu "big"`},
		{name: "get", args: []string{"network", "get", "lan"}, stdout: []string{"lan    192.168.1.0/24", "bridge:br0", "no ", "9000", "0/244",
			"reserved: 192.168.1.2-192.168.1.9\n", "reserved: 192.168.1.254\n", "addresses: 0 allocated of 244", "hosts:   none yet"}},
		{name: "get missing", args: []string{"network", "get", "nope"}, code: 1, stderr: "kumoi: network \"nope\" not found\n"},
		{name: "list selector", args: []string{"network", "ls", "-l", "env=prod", "-o", "json"}, stdout: []string{`"name": "net1"`}},
		{name: "update", args: []string{"network", "update", "net1", "--mtu", "1400", "--label", "team=a", "--remove-label", "env"},
			stdout: []string{"net1   10.10.0.0/24   10.10.0.1   nat    yes    1400"}},
		{name: "update clears reserve", args: []string{"network", "update", "lan", "--no-reserve", "-o", "json"}, stdout: []string{`"capacity": 253`}},
		{name: "update wrong cas", args: []string{"network", "update", "net1", "--mtu", "1500", "--cas", "1"}, code: 1, stderr: `network "net1" was not updated: its modify_index is`},
		{name: "update nothing", args: []string{"network", "update", "net1"}, code: 2, stderr: "kumoi: nothing to change"},
		{name: "delete", args: []string{"network", "delete", "lan"}, exact: "network \"lan\" deleted\n"},
	})
	out, _, _ := runCLI(t, "--addr", s.URL, "network", "list")
	checkTable(t, out, false)
}

func TestImageVolumeCommands(t *testing.T) {
	s := apitest.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "image create", args: []string{"image", "create", "debian", "--file", "debian.qcow2", "--format", "qcow2", "--sha256", strings.ToUpper(sha), "--size", "1048576"},
			stdout: []string{"NAME     FORMAT   SOURCE         SHA256          HOSTS   INDEX", "debian   qcow2    debian.qcow2   abababababab…   -"}},
		{name: "image create url", args: []string{"image", "create", "alpine", "--url", "https://example.com/a.qcow2", "--sha256", sha, "-o", "json"},
			stdout: []string{`"url": "https://example.com/a.qcow2"`, `"format": "qcow2"`}},
		{name: "image url without sha", args: []string{"image", "create", "x", "--url", "https://example.com/a.qcow2"}, code: 2, stderr: "kumoi: --url needs --sha256"},
		{name: "image no source", args: []string{"image", "create", "x"}, code: 2, stderr: "kumoi: missing --file or --url"},
		{name: "image both sources", args: []string{"image", "create", "x", "--file", "a", "--url", "https://e.com/a"}, code: 2, stderr: "contradict"},
		{name: "image dotdot", args: []string{"image", "create", "x", "--file", "../a"}, code: 2, stderr: `kumoi: invalid --file "../a"`},
		{name: "image bad sha", args: []string{"image", "create", "x", "--file", "a", "--sha256", "xyz"}, code: 1, stderr: "kumoi: spec.sha256: must be 64 hexadecimal digits"},
		{name: "image bad format", args: []string{"image", "create", "x", "--file", "a", "--format", "vmdk"}, code: 2, stderr: `invalid --format "vmdk": use qcow2 or raw`},
		{name: "image get", args: []string{"image", "get", "debian"}, stdout: []string{"sha256:  " + sha, "size:    1048576 bytes", "hosts:   none yet"}},
		{name: "image list", args: []string{"image", "list"}, stdout: []string{"alpine", "debian"}},

		{name: "volume create", args: []string{"volume", "create", "v1", "--size", "1GiB", "--image", "debian", "--persistent", "--label", "app=db"},
			stdout: []string{"NAME   SIZE   IMAGE    PERSISTENT   PHASE     HOST   ATTACHED   INDEX", "v1     1GiB   debian   yes          pending   -      -"}},
		{name: "volume create unknown image", args: []string{"volume", "create", "v9", "--size", "1GiB", "--image", "nope"}, code: 1, stderr: "kumoi: spec.image: "},
		{name: "volume size 0", args: []string{"volume", "create", "v9", "--size", "0"}, code: 1, stderr: "kumoi: spec.size_mib: must be at least 1 MiB (got 0)"},
		{name: "volume missing size", args: []string{"volume", "create", "v9"}, code: 2, stderr: "kumoi: missing --size"},
		{name: "volume bad size", args: []string{"volume", "create", "v9", "--size", "huge"}, code: 2, stderr: "kumoi: invalid --size"},
		{name: "volume resize", args: []string{"volume", "resize", "v1", "--size", "2GiB", "-o", "json"}, stdout: []string{`"size_mib": 2048`, `"persistent": true`}},
		{name: "volume shrink", args: []string{"volume", "resize", "v1", "--size", "1GiB"}, code: 1, stderr: "kumoi: spec.size_mib: a volume cannot shrink"},
		{name: "volume resize missing", args: []string{"volume", "resize", "nope", "--size", "1GiB"}, code: 1, stderr: `kumoi: volume "nope" not found`},
		{name: "image in use", args: []string{"image", "delete", "debian"}, code: 1, stderr: "v1"},
		{name: "volume list", args: []string{"volume", "ls", "-l", "app=db"}, stdout: []string{"v1     2GiB"}},
	})
	out, _, _ := runCLI(t, "--addr", s.URL, "volume", "list")
	checkTable(t, out, true)
	out, _, _ = runCLI(t, "--addr", s.URL, "image", "list")
	checkTable(t, out, false)
}

func TestVMNetworksAndDisks(t *testing.T) {
	s := apitest.New(t)
	s.AddHost(t, "h1")
	for _, args := range [][]string{
		{"network", "create", "net1", "--cidr", "10.10.0.0/24"},
		{"image", "create", "debian", "--file", "debian.qcow2"},
		{"volume", "create", "v1", "--size", "1GiB", "--persistent"},
		{"volume", "create", "v2", "--size", "512MiB"},
	} {
		if _, stderr, code := runCLI(t, append([]string{"--addr", s.URL}, args...)...); code != 0 {
			t.Fatalf("%v: %s", args, stderr)
		}
	}
	runCases(t, s.URL, []cliCase{
		{name: "create", args: []string{"vm", "create", "web", "--cpus", "1", "--memory", "256MiB", "--power", "stopped",
			"--network", "net1", "--network", "net1:10.10.0.50", "--disk", "image=debian,size=2GiB", "--disk", "volume=v1", "-o", "json"},
			stdout: []string{`"network": "net1"`, `"ip": "10.10.0.50"`, `"mac": "52:54:00:`, `"image": "debian"`, `"size_mib": 2048`, `"volume": "web-disk0"`, `"volume": "v1"`}},
		{name: "get", args: []string{"vm", "get", "web"}, stdout: []string{"web ", "nic 0:   network net1, address 10.10.0.", "nic 1:   network net1, address 10.10.0.50, mac 52:54:00:",
			"disk 0:  volume web-disk0 (image debian, 2GiB)\n", "disk 1:  volume v1\n"}},
		{name: "address taken", args: []string{"vm", "create", "db", "--cpus", "1", "--memory", "256MiB", "--network", "net1:10.10.0.50"}, code: 1, stderr: "10.10.0.50"},
		{name: "bad network flag", args: []string{"vm", "create", "db", "--cpus", "1", "--memory", "256MiB", "--network", "net1:nope"}, code: 2,
			stderr: `kumoi: invalid --network "net1:nope": "nope" is not an address; write NETWORK:IP`},
		{name: "bad network name", args: []string{"vm", "create", "db", "--cpus", "1", "--memory", "256MiB", "--network", "Net_1"}, code: 2,
			stderr: `kumoi: invalid --network "Net_1": write NETWORK or NETWORK:IP`},
		{name: "bad disk", args: []string{"vm", "create", "db", "--cpus", "1", "--memory", "256MiB", "--disk", "debian"}, code: 2,
			stderr: `kumoi: invalid --disk "debian": write image=IMAGE,size=SIZE`},
		{name: "disk without size", args: []string{"vm", "create", "db", "--cpus", "1", "--memory", "256MiB", "--disk", "image=debian"}, code: 2,
			stderr: `a disk from an image needs its size, e.g. image=debian,size=2GiB`},
		{name: "disk bad size", args: []string{"vm", "create", "db", "--cpus", "1", "--memory", "256MiB", "--disk", "image=debian,size=lots"}, code: 2,
			stderr: `size "lots" is not a size`},
		{name: "disk unknown key", args: []string{"vm", "create", "db", "--cpus", "1", "--memory", "256MiB", "--disk", "volume=v2,bus=scsi"}, code: 2,
			stderr: `unknown key "bus"`},
		{name: "unknown volume", args: []string{"vm", "create", "db", "--cpus", "1", "--memory", "256MiB", "--disk", "volume=nope"}, code: 1,
			stderr: "kumoi: spec.disks[0].volume: "},
		{name: "network in use", args: []string{"network", "delete", "net1"}, code: 1, stderr: "web"},
		{name: "attach", args: []string{"volume", "attach", "v2", "web"}, exact: "volume \"v2\" attached to vm \"web\" as disk 2\n"},
		{name: "attach again is a no-op", args: []string{"volume", "attach", "v2", "web", "-o", "json"}, stdout: []string{`"volume": "v2"`}},
		{name: "attach missing volume", args: []string{"volume", "attach", "nope", "web"}, code: 1, stderr: `kumoi: volume "nope" not found`},
		{name: "attach missing vm", args: []string{"volume", "attach", "v2", "nope"}, code: 1, stderr: `kumoi: vm "nope" not found`},
		{name: "attach usage", args: []string{"volume", "attach", "v2"}, code: 2, stderr: "kumoi: give the volume and the VM"},
		{name: "volume attached", args: []string{"volume", "get", "v2"}, stdout: []string{"web"}},
		{name: "delete attached", args: []string{"volume", "delete", "v2"}, code: 1, stderr: "web"},
		{name: "detach", args: []string{"volume", "detach", "v2"}, exact: "volume \"v2\" detached from vm \"web\"\n"},
		{name: "detach again", args: []string{"volume", "detach", "v2"}, code: 1, stderr: `kumoi: volume "v2" is not attached to any VM`},
		{name: "delete detached", args: []string{"volume", "delete", "v2"}, exact: "volume \"v2\" deleted\n"},
	})
	// Once placed (and not stopped), a VM's disks cannot change.
	s.Place(t, map[string]string{"web": "h1"})
	runCases(t, s.URL, []cliCase{
		{name: "volume for later", args: []string{"volume", "create", "v3", "--size", "1GiB"}, stdout: []string{"v3"}},
		{name: "attach to an active VM", args: []string{"volume", "attach", "v3", "web"}, code: 1, stderr: "stop"},
	})
	if o := s.Object(resource.KindVM, "web"); strings.Contains(string(o.Spec), "v3") {
		t.Fatalf("v3 was attached: %s", o.Spec)
	}
}

func TestNetworkImageVolumeHelp(t *testing.T) {
	s := apitest.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "app help", args: []string{"--help"}, stdout: []string{"network, net", "image ", "volume, vol", "kumoi network create net1"}},
		{name: "network help", args: []string{"network"}, stdout: []string{"kumoi network - ", "create ", "update ", "Examples:"}},
		{name: "network create help", args: []string{"network", "create", "--help"}, stdout: []string{
			"--cidr CIDR", "--gateway ADDRESS", "--mode MODE", "--dhcp", "--mtu MTU", "--bridge DEVICE", "--reserve FROM[-TO]", "--label KEY=VALUE", "GLOBAL OPTIONS"}},
		{name: "image create help", args: []string{"image", "create", "-h"}, stdout: []string{"--file NAME", "--url URL", "--format FORMAT", "--sha256 HEX", "--size BYTES"}},
		{name: "volume help", args: []string{"volume", "--help"}, stdout: []string{"resize", "attach", "detach"}},
		{name: "volume create help", args: []string{"volume", "create", "--help"}, stdout: []string{"--size SIZE", "--image IMAGE", "--persistent"}},
		{name: "vm create help", args: []string{"vm", "create", "--help"}, stdout: []string{"--network NETWORK[:IP]", "--disk image=IMAGE,size=SIZE"}},
		{name: "unknown verb", args: []string{"volume", "frob"}, code: 2, stderr: `unknown command "frob" for 'kumoi volume'`},
	})
}
