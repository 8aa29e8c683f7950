package resource

import (
	"encoding/json"
	"time"
)

// KindVolume is the volume kind: a qcow2 disk in a host's storage pool
// "kumoi", empty or a copy-on-write overlay on a cached image.
const KindVolume Kind = "volume"

// Bounds of a volume's size.
const (
	MaxVolumeSizeMiB = 1 << 26 // 64 TiB
)

// VolumeSpec is what a user wants of a volume.
type VolumeSpec struct {
	// SizeMiB is the disk's virtual size. It may grow (resize), never
	// shrink.
	SizeMiB int64 `json:"size_mib"`
	// Image, if set, names the image the volume starts as (a qcow2
	// overlay on the host's cached copy). The image must exist when the
	// volume is written.
	Image string `json:"image,omitempty"`
	// Persistent volumes survive the delete of the VM they are attached
	// to; others are deleted with it.
	Persistent bool `json:"persistent,omitempty"`
	// Project names the project the volume's size counts against
	// (empty: "default"; log protocol 8).
	Project string `json:"project,omitempty"`
}

// VolumeStatus is what the system observed of a volume.
type VolumeStatus struct {
	// Phase is one of the Volume* phases.
	Phase string `json:"phase"`
	// Host holds the volume: set by the state machine when a VM using it
	// is first placed; a VM with this volume is placed on this host only.
	Host string `json:"host,omitempty"`
	// AttachedTo is the VM whose spec names the volume (state machine).
	AttachedTo string `json:"attached_to,omitempty"`
	// Reason says why the volume is in its phase.
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// SizeMiB is the size the worker last made the disk (a resize shows
	// here once applied).
	SizeMiB int64 `json:"size_mib,omitempty"`
	// ReportSeq is the sequence of the last report of the volume
	// recorded (ResourceReport.Seq; log protocol 11): an older one is
	// refused. It stays when the volume moves to another host, whose
	// worker numbers its reports above it.
	ReportSeq uint64 `json:"report_seq,omitempty"`
}

// Volume phases.
const (
	// VolumePending: not on any host yet (created when first used).
	VolumePending = "pending"
	// VolumeReady: the disk exists on status.host.
	VolumeReady = "ready"
	// VolumeMissing: the disk was removed behind Kumoi's back; its data
	// is gone and it is not silently recreated.
	VolumeMissing = "missing"
	// VolumeFailed: the disk could not be created (e.g. the image's
	// checksum did not match).
	VolumeFailed = "failed"
)

// Default fills in nothing: every field is given or zero.
func (s *VolumeSpec) Default() {}

// Validate checks the size and the image name.
func (s *VolumeSpec) Validate() error {
	switch {
	case s.SizeMiB < 1:
		return Errorf("spec.size_mib", "must be at least 1 MiB (got %d)", s.SizeMiB)
	case s.SizeMiB > MaxVolumeSizeMiB:
		return Errorf("spec.size_mib", "must be at most %d MiB (got %d)", int64(MaxVolumeSizeMiB), s.SizeMiB)
	}
	if s.Image != "" {
		if err := ValidateName(s.Image); err != nil {
			return Errorf("spec.image", "%v", err.(*FieldError).Msg)
		}
	}
	if s.Project != "" {
		if err := ValidateName(s.Project); err != nil {
			return Errorf("spec.project", "%v", err.(*FieldError).Msg)
		}
	}
	return nil
}

// reviseVolume keeps a volume's image and refuses to shrink it.
func reviseVolume(old, next json.RawMessage) (json.RawMessage, error) {
	if old == nil {
		return next, nil
	}
	var o, n VolumeSpec
	if err := json.Unmarshal(old, &o); err != nil {
		return next, nil // a spec the state machine cannot read: no rule to keep
	}
	if err := json.Unmarshal(next, &n); err != nil {
		return nil, Errorf("spec", "%v", err)
	}
	if n.Image != o.Image {
		return nil, Errorf("spec.image", "cannot change once the volume exists (it is %q)", o.Image)
	}
	if n.SizeMiB < o.SizeMiB {
		return nil, Errorf("spec.size_mib", "a volume cannot shrink (from %d MiB to %d MiB): data beyond the new end would be lost", o.SizeMiB, n.SizeMiB)
	}
	return next, nil
}

func init() {
	Register(&KindInfo{
		Kind:      KindVolume,
		Revise:    reviseVolume,
		Plural:    "volumes",
		NewSpec:   func() Spec { return new(VolumeSpec) },
		NewStatus: func() any { return new(VolumeStatus) },
		InitialStatus: func(now time.Time) any {
			return &VolumeStatus{Phase: VolumePending, Reason: "created when a VM first uses it", Since: now.UTC()}
		},
	})
}
