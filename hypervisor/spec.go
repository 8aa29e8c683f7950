package hypervisor

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// Validate checks a spec before anything is defined. Errors wrap
// ErrInvalidSpec and name the field.
func (s DomainSpec) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Name == "":
		return bad("name", "must not be empty")
	case len(s.Name) > 253:
		return bad("name", "must be at most 253 characters (got %d)", len(s.Name))
	case strings.IndexFunc(s.Name, func(r rune) bool {
		return !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.'))
	}) >= 0:
		return bad("name", "may hold only ASCII letters, digits, '-', '_' and '.' (got %q)", s.Name)
	case s.VMID == "":
		return bad("vm_id", "must not be empty: every Kumoi domain is tagged with its VM id")
	case s.CPUs < 1:
		return bad("cpus", "must be at least 1 (got %d)", s.CPUs)
	case s.MemoryMiB < 1:
		return bad("memory_mib", "must be at least 1 (got %d)", s.MemoryMiB)
	case len(s.Cluster) > 64 || strings.IndexFunc(s.Cluster, func(r rune) bool {
		return !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-'))
	}) >= 0:
		return bad("cluster", "must be a cluster id: at most 64 ASCII letters, digits and '-' (got %q)", s.Cluster)
	}
	return s.Boot.Validate()
}

// Validate checks that a boot setting is complete and consistent.
func (b Boot) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: boot.%s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
	}
	switch b.ImageFormat {
	case "", ImageQCOW2, ImageRaw:
	default:
		return bad("image_format", "must be qcow2 or raw (got %q)", b.ImageFormat)
	}
	if b.ImageFormat != "" && b.Image == "" {
		return bad("image_format", "set without an image")
	}
	if b.Kernel == "" && (b.Initrd != "" || b.Cmdline != "") {
		return bad("kernel", "initrd and cmdline need a kernel")
	}
	return nil
}

// Format is the image format with its default (qcow2) filled in.
func (b Boot) Format() ImageFormat {
	if b.ImageFormat == "" {
		return ImageQCOW2
	}
	return b.ImageFormat
}

// Needs returns the capabilities booting b requires.
func (b Boot) Needs() []Capability {
	var cs []Capability
	if b.Image != "" {
		cs = append(cs, CapDiskBoot)
	}
	if b.Kernel != "" {
		cs = append(cs, CapKernelBoot)
	}
	return cs
}

// Equal reports whether two specs define the same domain.
func (s DomainSpec) Equal(o DomainSpec) bool {
	return s.Name == o.Name && s.VMID == o.VMID && s.Epoch == o.Epoch && s.Cluster == o.Cluster &&
		s.CPUs == o.CPUs && s.MemoryMiB == o.MemoryMiB && s.Boot.normal() == o.Boot.normal() &&
		slices.Equal(s.Disks, o.Disks) && slices.Equal(s.NICs, o.NICs)
}

func (b Boot) normal() Boot {
	if b.Image != "" {
		b.ImageFormat = b.Format()
	}
	return b
}
