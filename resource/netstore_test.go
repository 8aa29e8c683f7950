package resource

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

// TestNetstoreSpecsRefused: bad network, image, volume and VM device
// specs are refused with a FieldError naming the field.
func TestNetstoreSpecsRefused(t *testing.T) {
	for _, tc := range []struct {
		kind  Kind
		spec  string
		field string
		msg   string
	}{
		{KindNetwork, `{"cidr":"10.10.0.0/33"}`, "spec.cidr", "must be a prefix"},
		{KindNetwork, `{"cidr":"banana"}`, "spec.cidr", "must be a prefix"},
		{KindNetwork, `{}`, "spec.cidr", "must be a prefix"},
		{KindNetwork, `{"cidr":"10.10.0.0/31"}`, "spec.cidr", "/30 or shorter"},
		{KindNetwork, `{"cidr":"10.0.0.0/7"}`, "spec.cidr", "at most a /8"},
		{KindNetwork, `{"cidr":"fd00::/48"}`, "spec.cidr", "at most a /64"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","gateway":"10.10.1.1"}`, "spec.gateway", "outside the network"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","gateway":"10.10.0.255"}`, "spec.gateway", "broadcast"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","gateway":"10.10.0.0"}`, "spec.gateway", "network's own"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","gateway":"x"}`, "spec.gateway", "must be an address"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","mode":"vxlan"}`, "spec.mode", "nat, isolated, bridge"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","mode":"bridge"}`, "spec.bridge", "required with mode bridge"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","mode":"bridge","bridge":"a/b"}`, "spec.bridge", "not an interface name"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","mode":"bridge","bridge":"averyveryverylongbridge"}`, "spec.bridge", "not an interface name"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","bridge":"br0"}`, "spec.bridge", "mode bridge only"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","mtu":100}`, "spec.mtu", "between"},
		{KindNetwork, `{"cidr":"fd00::/64","mtu":1000}`, "spec.mtu", "at least 1280"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","reserved":[{"from":"10.10.1.1"}]}`, "spec.reserved[0]", "not inside"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","reserved":[{"from":"10.10.0.9","to":"10.10.0.3"}]}`, "spec.reserved[0]", "comes before"},
		{KindNetwork, `{"cidr":"10.10.0.0/24","dhcp":"yes"}`, "spec.dhcp", ""},
		{KindImage, `{"format":"vmdk","file":"a.img"}`, "spec.format", "qcow2 or raw"},
		{KindImage, `{}`, "spec.file", "give a source"},
		{KindImage, `{"file":"a","url":"http://127.0.0.1/a"}`, "spec.url", "not both"},
		{KindImage, `{"url":"ftp://127.0.0.1/a","sha256":"` + strings.Repeat("a", 64) + `"}`, "spec.url", "http or https"},
		{KindImage, `{"url":"http://u:p@127.0.0.1/a","sha256":"` + strings.Repeat("a", 64) + `"}`, "spec.url", "credentials"},
		{KindImage, `{"url":"http://127.0.0.1/a"}`, "spec.sha256", "required with a url"},
		{KindImage, `{"file":"a","sha256":"abc"}`, "spec.sha256", "64 hexadecimal"},
		{KindImage, `{"file":"../etc/shadow"}`, "spec.file", `".."`},
		{KindImage, `{"file":"a","size_bytes":-1}`, "spec.size_bytes", "negative"},
		{KindVolume, `{"size_mib":0}`, "spec.size_mib", "at least 1"},
		{KindVolume, `{}`, "spec.size_mib", "at least 1"},
		{KindVolume, `{"size_mib":1,"image":"Bad_Name"}`, "spec.image", "DNS label"},
		{KindVM, `{"cpus":1,"memory_mib":1,"nics":[{"network":""}]}`, "spec.nics[0].network", "must not be empty"},
		{KindVM, `{"cpus":1,"memory_mib":1,"nics":[{"network":"n","ip":"10.1"}]}`, "spec.nics[0].ip", "address"},
		{KindVM, `{"cpus":1,"memory_mib":1,"nics":[{"network":"n","mac":"01:00:00:00:00:01"}]}`, "spec.nics[0].mac", "multicast"},
		{KindVM, `{"cpus":1,"memory_mib":1,"nics":[{"network":"n","mac":"52:54:00:AA:00:01"}]}`, "spec.nics[0].mac", "lower case"},
		{KindVM, `{"cpus":1,"memory_mib":1,"disks":[{}]}`, "spec.disks[0]", "give a volume"},
		{KindVM, `{"cpus":1,"memory_mib":1,"disks":[{"image":"debian"}]}`, "spec.disks[0].size_mib", "required with an image"},
		{KindVM, `{"cpus":1,"memory_mib":1,"disks":[{"volume":"v","size_mib":3}]}`, "spec.disks[0].size_mib", "resize the volume"},
		{KindVM, `{"cpus":1,"memory_mib":1,"disks":[{"volume":"v"},{"volume":"v"}]}`, "spec.disks[1].volume", "already disk 0"},
	} {
		_, err := NormalizeRequestSpec(tc.kind, json.RawMessage(tc.spec))
		if err == nil {
			t.Errorf("%s %s: accepted", tc.kind, tc.spec)
			continue
		}
		wantFieldError(t, err, tc.field, tc.msg)
	}
}

// TestNetworkDefaults: omitted fields take their defaults, the CIDR is
// written masked, and the canonical form is stable under the state
// machine's NormalizeSpec.
func TestNetworkDefaults(t *testing.T) {
	raw, err := NormalizeRequestSpec(KindNetwork, json.RawMessage(`{"cidr":"10.10.0.7/24"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cidr":"10.10.0.0/24","gateway":"10.10.0.1","dhcp":true,"mode":"nat"}`
	if string(raw) != want {
		t.Errorf("canonical = %s; want %s", raw, want)
	}
	again, err := NormalizeSpec(KindNetwork, raw)
	if err != nil || string(again) != string(raw) {
		t.Errorf("NormalizeSpec(canonical) = %s, %v; want it unchanged", again, err)
	}
	raw, err = NormalizeRequestSpec(KindNetwork, json.RawMessage(`{"cidr":"10.10.0.0/24","dhcp":false}`))
	if err != nil || !strings.Contains(string(raw), `"dhcp":false`) {
		t.Errorf("dhcp false: %s, %v", raw, err)
	}
}

// TestNetworkCapacity counts the addresses VMs may hold.
func TestNetworkCapacity(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want int64
	}{
		{`{"cidr":"10.10.0.0/24"}`, 253}, // 256 - network - broadcast - gateway
		{`{"cidr":"10.10.0.0/30"}`, 1},   // .1 gateway, .2 free
		{`{"cidr":"10.10.0.0/28"}`, 13},  // 16 - 3
		{`{"cidr":"10.10.0.0/24","reserved":[{"from":"10.10.0.1","to":"10.10.0.10"}]}`, 244}, // gateway inside: counted once
		{`{"cidr":"10.10.0.0/24","reserved":[{"from":"10.10.0.5","to":"10.10.0.9"},{"from":"10.10.0.8","to":"10.10.0.12"}]}`, 245},
		{`{"cidr":"fd00::/120"}`, 254},    // 256 - subnet-router anycast - gateway
		{`{"cidr":"fd00::/64"}`, 1 << 62}, // saturates
	} {
		raw, err := NormalizeRequestSpec(KindNetwork, json.RawMessage(tc.spec))
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		var s NetworkSpec
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		if got := s.Capacity(); got != tc.want {
			t.Errorf("%s: Capacity = %d; want %d", tc.spec, got, tc.want)
		}
	}
	var s NetworkSpec
	if err := json.Unmarshal([]byte(`{"cidr":"10.10.0.0/24","gateway":"10.10.0.1","reserved":[{"from":"10.10.0.100","to":"10.10.0.110"}]}`), &s); err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{
		"10.10.0.0": false, "10.10.0.1": false, "10.10.0.2": true, "10.10.0.100": false,
		"10.10.0.110": false, "10.10.0.111": true, "10.10.0.255": false, "10.10.1.2": false,
	} {
		if got := s.Assignable(netip.MustParseAddr(a)); got != want {
			t.Errorf("Assignable(%s) = %v; want %v", a, got, want)
		}
	}
}

// TestImageImmutableVolumeGrows: an image's spec cannot change; a
// volume keeps its image and never shrinks.
func TestImageImmutableVolumeGrows(t *testing.T) {
	img := json.RawMessage(`{"format":"qcow2","file":"a.qcow2"}`)
	if _, err := ReviseSpec(KindImage, img, json.RawMessage(`{"format":"raw","file":"a.qcow2"}`)); err == nil {
		t.Error("an image's format changed")
	}
	if _, err := ReviseSpec(KindImage, img, img); err != nil {
		t.Errorf("same image spec refused: %v", err)
	}
	vol := json.RawMessage(`{"size_mib":1024,"image":"debian"}`)
	if _, err := ReviseSpec(KindVolume, vol, json.RawMessage(`{"size_mib":512,"image":"debian"}`)); err == nil || !strings.Contains(err.Error(), "cannot shrink") {
		t.Errorf("shrink: %v", err)
	}
	if _, err := ReviseSpec(KindVolume, vol, json.RawMessage(`{"size_mib":2048}`)); err == nil || !strings.Contains(err.Error(), "spec.image") {
		t.Errorf("image dropped: %v", err)
	}
	if _, err := ReviseSpec(KindVolume, vol, json.RawMessage(`{"size_mib":2048,"image":"debian","persistent":true}`)); err != nil {
		t.Errorf("grow: %v", err)
	}
}

// FuzzNetstoreSpecs: the spec decoders of every kind never panic, and
// what a request's normalization accepts the state machine's accepts
// unchanged.
func FuzzNetstoreSpecs(f *testing.F) {
	for _, s := range []string{
		`{"cidr":"10.10.0.0/24","reserved":[{"from":"10.10.0.2","to":"10.10.0.9"}],"mtu":9000}`,
		`{"cidr":"fd00::/120","mode":"isolated","dhcp":false}`,
		`{"cidr":"10.0.0.0/8","mode":"bridge","bridge":"br0"}`,
		`{"format":"raw","url":"https://127.0.0.1/a.img","sha256":"` + strings.Repeat("A", 64) + `"}`,
		`{"size_mib":10,"image":"debian","persistent":true}`,
		`{"cpus":1,"memory_mib":1,"nics":[{"network":"n","ip":"10.0.0.2","mac":"52:54:00:00:00:01"}],"disks":[{"image":"d","size_mib":5},{"volume":"v"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range Kinds() {
			raw, err := NormalizeRequestSpec(k.Kind, data)
			if err != nil {
				continue
			}
			again, err := NormalizeSpec(k.Kind, raw)
			if err != nil || string(again) != string(raw) {
				t.Fatalf("%s %q: request form %s, state machine form %s, %v", k.Kind, data, raw, again, err)
			}
			if k.Kind == KindNetwork {
				var s NetworkSpec
				if err := json.Unmarshal(raw, &s); err == nil {
					_ = s.Capacity()
				}
			}
		}
	})
}
