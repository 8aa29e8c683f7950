//go:build libvirt_dlopen

package libvirt

import (
	"encoding/xml"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/kumoi/kumoi/hypervisor"
)

// tag is the Kumoi metadata element of a domain: the VM id, the placement
// epoch and the cluster identity (absent in domains defined by builds
// older than cluster identity, which read back with an empty cluster).
type tag struct {
	XMLName xml.Name `xml:"https://kumoi.dev/xmlns/domain/1 instance"`
	VMID    string   `xml:"vm-id"`
	Epoch   uint64   `xml:"epoch"`
	Cluster string   `xml:"cluster,omitempty"`
}

func (t tag) ok() bool { return t.VMID != "" }

// tagOf is the tag a domain defined from spec carries.
func tagOf(spec hypervisor.DomainSpec) tag {
	return tag{VMID: spec.VMID, Epoch: spec.Epoch, Cluster: spec.Cluster}
}

// marshal renders the element for <metadata> or virDomainSetMetadata.
func (t tag) marshal() (string, error) {
	b, err := xml.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("kumoi metadata: %w", err)
	}
	return string(b), nil
}

// parseTag reads the element virDomainGetMetadata returns (libvirt strips
// its namespace); the zero tag if it is not one.
func parseTag(s string) tag {
	var body struct {
		XMLName xml.Name
		VMID    string `xml:"vm-id"`
		Epoch   uint64 `xml:"epoch"`
		Cluster string `xml:"cluster"`
	}
	if err := xml.Unmarshal([]byte(s), &body); err != nil || body.XMLName.Local != "instance" {
		return tag{}
	}
	return tag{VMID: body.VMID, Epoch: body.Epoch, Cluster: body.Cluster}
}

// findTag finds the Kumoi element, by namespace, among the children of a
// domain's <metadata>; the zero tag if there is none.
func findTag(s string) tag {
	dec := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := dec.Token()
		if err != nil {
			return tag{}
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Space != Namespace || se.Name.Local != "instance" {
			continue
		}
		var t tag
		if err := dec.DecodeElement(&t, &se); err != nil {
			return tag{}
		}
		return t
	}
}

// domainXML builds the definition of spec. uuid keeps an existing domain's
// identity when it is redefined ("" lets libvirt choose one).
func domainXML(spec hypervisor.DomainSpec, domType, uuid, consoleLogDir string) (string, error) {
	meta, err := tagOf(spec).marshal()
	if err != nil {
		return "", err
	}
	serial := libvirtxml.DomainSerial{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
	}
	if consoleLogDir != "" {
		serial.Log = &libvirtxml.DomainChardevLog{File: filepath.Join(consoleLogDir, spec.Name+".log"), Append: "off"}
	}
	x := &libvirtxml.Domain{
		Type:     domType,
		Name:     spec.Name,
		UUID:     uuid,
		Metadata: &libvirtxml.DomainMetadata{XML: meta},
		Memory:   &libvirtxml.DomainMemory{Value: uint(spec.MemoryMiB), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(spec.CPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Type: "hvm"},
			Kernel:  spec.Boot.Kernel,
			Initrd:  spec.Boot.Initrd,
			Cmdline: spec.Boot.Cmdline,
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{}, // the guest hears ACPI shutdown requests
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Serials:  []libvirtxml.DomainSerial{serial},
			Consoles: []libvirtxml.DomainConsole{{Target: &libvirtxml.DomainConsoleTarget{Type: "serial"}}},
		},
	}
	if spec.Boot.Image != "" {
		x.Devices.Disks = []libvirtxml.DomainDisk{{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: string(spec.Boot.Format())},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: spec.Boot.Image}},
			Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
		}}
		if spec.Boot.Kernel == "" {
			x.OS.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}}
		}
	}
	// Extra disks are vdb, vdc, ...: vda is the boot image's, with or
	// without one, so that the two read back apart. (A guest names its
	// virtio disks in probe order, whatever the target says: with no boot
	// image the first extra disk is its vda.)
	for i, dk := range spec.Disks {
		disk := libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: string(dk.FormatOrDefault())},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: dk.Path}},
			Target: &libvirtxml.DomainDiskTarget{Dev: diskTarget(i + 1), Bus: "virtio"},
		}
		if i == 0 && spec.Boot.Image == "" && spec.Boot.Kernel == "" {
			disk.Boot = &libvirtxml.DomainDeviceBoot{Order: 1} // boots from its first volume
		}
		x.Devices.Disks = append(x.Devices.Disks, disk)
	}
	for _, n := range spec.NICs {
		ifc := libvirtxml.DomainInterface{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: strings.ToLower(n.MAC)},
			Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: n.Network}},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}
		if n.MTU > 0 {
			ifc.MTU = &libvirtxml.DomainInterfaceMTU{Size: uint(n.MTU)}
		}
		x.Devices.Interfaces = append(x.Devices.Interfaces, ifc)
	}
	return x.Marshal()
}

// diskTarget is the i-th virtio disk's name: vda, vdb, ..., vdz, vdaa, ...
func diskTarget(i int) string {
	name := ""
	for i++; i > 0; i = (i - 1) / 26 {
		name = string(rune('a'+(i-1)%26)) + name
	}
	return "vd" + name
}

// diskIndex is the inverse of diskTarget (-1 if dev is not a virtio name).
func diskIndex(dev string) int {
	rest, ok := strings.CutPrefix(dev, "vd")
	if !ok || rest == "" {
		return -1
	}
	n := 0
	for _, r := range rest {
		if r < 'a' || r > 'z' {
			return -1
		}
		n = n*26 + int(r-'a') + 1
	}
	return n - 1
}

// parsed is what the driver reads back from a domain's XML.
type parsed struct {
	name      string
	uuid      string
	tag       tag
	cpus      int
	memoryMiB int64
	boot      hypervisor.Boot
	disks     []hypervisor.DomainDisk
	nics      []hypervisor.DomainNIC
}

// spec is the DomainSpec the XML was (or could have been) defined from.
func (p parsed) spec() hypervisor.DomainSpec {
	return hypervisor.DomainSpec{Name: p.name, VMID: p.tag.VMID, Epoch: p.tag.Epoch, Cluster: p.tag.Cluster,
		CPUs: p.cpus, MemoryMiB: p.memoryMiB, Boot: p.boot, Disks: p.disks, NICs: p.nics}
}

func parseDomainXML(s string) (parsed, error) {
	var x libvirtxml.Domain
	if err := x.Unmarshal(s); err != nil {
		return parsed{}, fmt.Errorf("parse domain XML: %w", err)
	}
	p := parsed{name: x.Name, uuid: x.UUID}
	if x.Metadata != nil {
		p.tag = findTag(x.Metadata.XML)
	}
	if x.VCPU != nil {
		p.cpus = int(x.VCPU.Value)
		if x.VCPU.Current > 0 {
			p.cpus = int(x.VCPU.Current)
		}
	}
	if x.Memory != nil {
		mib, err := toMiB(x.Memory.Value, x.Memory.Unit)
		if err != nil {
			return parsed{}, err
		}
		p.memoryMiB = mib
	}
	if x.OS != nil {
		p.boot.Kernel, p.boot.Initrd, p.boot.Cmdline = x.OS.Kernel, x.OS.Initrd, x.OS.Cmdline
	}
	if x.Devices != nil {
		// The boot image is vda (or, in a domain without target names,
		// the first file disk); the extra disks follow in target order.
		type extra struct {
			i    int
			disk hypervisor.DomainDisk
		}
		var extras []extra
		for _, disk := range x.Devices.Disks {
			if !(disk.Device == "" || disk.Device == "disk") || disk.Source == nil || disk.Source.File == nil {
				continue
			}
			format := hypervisor.ImageFormat("")
			if disk.Driver != nil {
				format = hypervisor.ImageFormat(disk.Driver.Type)
			}
			i := -1
			if disk.Target != nil {
				i = diskIndex(disk.Target.Dev)
			}
			switch {
			case i > 0:
				extras = append(extras, extra{i, hypervisor.DomainDisk{Path: disk.Source.File.File, Format: format}})
			case p.boot.Image == "":
				p.boot.Image, p.boot.ImageFormat = disk.Source.File.File, format
			}
		}
		sort.Slice(extras, func(a, b int) bool { return extras[a].i < extras[b].i })
		for _, e := range extras {
			p.disks = append(p.disks, e.disk)
		}
		for _, ifc := range x.Devices.Interfaces {
			if ifc.Source == nil || ifc.Source.Network == nil {
				continue
			}
			n := hypervisor.DomainNIC{Network: ifc.Source.Network.Network}
			if ifc.MAC != nil {
				n.MAC = strings.ToLower(ifc.MAC.Address)
			}
			if ifc.MTU != nil {
				n.MTU = int(ifc.MTU.Size)
			}
			p.nics = append(p.nics, n)
		}
	}
	return p, nil
}

// toMiB converts a libvirt memory value to MiB, rounding up.
func toMiB(v uint, unit string) (int64, error) {
	var bytesPer uint64
	switch unit {
	case "b", "bytes":
		bytesPer = 1
	case "", "k", "KiB":
		bytesPer = 1 << 10
	case "KB":
		bytesPer = 1000
	case "M", "MiB":
		bytesPer = 1 << 20
	case "MB":
		bytesPer = 1000 * 1000
	case "G", "GiB":
		bytesPer = 1 << 30
	case "GB":
		bytesPer = 1000 * 1000 * 1000
	case "T", "TiB":
		bytesPer = 1 << 40
	default:
		return 0, fmt.Errorf("domain XML: unknown memory unit %q", unit)
	}
	b := uint64(v) * bytesPer
	return int64((b + (1<<20 - 1)) >> 20), nil
}

// preferredDomainType picks the domain type from a host's capabilities XML:
// kvm if offered for an hvm guest, else the first hvm guest domain type.
func preferredDomainType(capsXML string) (string, error) {
	var c libvirtxml.Caps
	if err := c.Unmarshal(capsXML); err != nil {
		return "", fmt.Errorf("parse capabilities: %w", err)
	}
	arch := ""
	if c.Host.CPU != nil {
		arch = c.Host.CPU.Arch
	}
	first := ""
	for _, g := range c.Guests {
		if g.OSType != "hvm" {
			continue
		}
		if arch != "" && g.Arch.Name != arch {
			continue
		}
		for _, dom := range g.Arch.Domains {
			if dom.Type == "kvm" {
				return "kvm", nil
			}
			if first == "" {
				first = dom.Type
			}
		}
	}
	if first == "" {
		return "", fmt.Errorf("host offers no hvm guest for its architecture %q", arch)
	}
	return first, nil
}
