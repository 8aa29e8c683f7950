package resource

import (
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"time"
)

// KindImage is the image kind: a catalog entry for a disk image that
// workers fetch into their local cache the first time a VM needs it,
// verify against its checksum, and use as the backing file of volumes.
const KindImage Kind = "image"

// Image formats.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// MaxImageURLLen bounds an image URL.
const MaxImageURLLen = 4096

// ImageSpec is a disk image in the catalog. Exactly one of File and URL.
// An image is immutable once created (labels may change): a new version
// is a new image.
type ImageSpec struct {
	// Format is qcow2 or raw.
	Format string `json:"format"`
	// File names a file in the workers' image directory (--image-dir):
	// every host that runs a VM from it must hold it there.
	File string `json:"file,omitempty"`
	// URL is an http or https URL the workers download the image from.
	URL string `json:"url,omitempty"`
	// SizeBytes, if set, is the image's exact size in bytes (checked).
	SizeBytes int64 `json:"size_bytes,omitempty"`
	// SHA256 is the hex SHA-256 of the image file. Required with a URL;
	// with a file, if omitted, nothing is verified.
	SHA256 string `json:"sha256,omitempty"`
}

// ImageStatus is the image on each host, as its worker reported it.
type ImageStatus struct {
	Hosts map[string]HostResourceState `json:"hosts,omitempty"`
	// RemovedSeq is NetworkStatus.RemovedSeq, for images.
	RemovedSeq map[string]uint64 `json:"removed_seq,omitempty"`
}

// Default fills in format qcow2 and writes the checksum in lower case.
func (s *ImageSpec) Default() {
	if s.Format == "" {
		s.Format = FormatQCOW2
	}
	s.SHA256 = strings.ToLower(s.SHA256)
}

// Canonicalize writes the checksum in lower case.
func (s *ImageSpec) Canonicalize() { s.SHA256 = strings.ToLower(s.SHA256) }

// Validate checks the format, source and checksum.
func (s *ImageSpec) Validate() error {
	switch s.Format {
	case FormatQCOW2, FormatRaw:
	default:
		return Errorf("spec.format", "must be qcow2 or raw (got %q)", s.Format)
	}
	switch {
	case s.File == "" && s.URL == "":
		return Errorf("spec.file", "give a source: file (a name in the workers' image directory) or url (http or https)")
	case s.File != "" && s.URL != "":
		return Errorf("spec.url", "give file or url, not both")
	}
	if s.URL != "" {
		if len(s.URL) > MaxImageURLLen {
			return Errorf("spec.url", "is %d bytes long; the limit is %d", len(s.URL), MaxImageURLLen)
		}
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Errorf("spec.url", "must be an http or https URL (got %q)", s.URL)
		}
		if u.User != nil {
			return Errorf("spec.url", "must not hold credentials (they would be readable by anyone who may read images)")
		}
		if s.SHA256 == "" {
			return Errorf("spec.sha256", "is required with a url: the workers verify what they download against it")
		}
	}
	if s.File != "" {
		if len(s.File) > MaxBootPathLen {
			return Errorf("spec.file", "is %d bytes long; the limit is %d", len(s.File), MaxBootPathLen)
		}
		if hasDotDot(s.File) {
			return Errorf("spec.file", `must not hold a ".." component (got %q): give a name in the hosts' image directory (--image-dir)`, s.File)
		}
	}
	if s.SHA256 != "" {
		if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != 32 {
			return Errorf("spec.sha256", "must be 64 hexadecimal digits (got %q)", s.SHA256)
		}
	}
	if s.SizeBytes < 0 {
		return Errorf("spec.size_bytes", "must not be negative (got %d)", s.SizeBytes)
	}
	return nil
}

// ValidateRequest checks the text of the source a client sent.
func (s *ImageSpec) ValidateRequest() error {
	for _, f := range []struct{ name, v string }{{"file", s.File}, {"url", s.URL}} {
		if err := checkText(f.v); err != "" {
			return Errorf("spec."+f.name, "%s", err)
		}
	}
	return nil
}

// reviseImage refuses a change of an image's spec: images are immutable.
func reviseImage(old, next json.RawMessage) (json.RawMessage, error) {
	if old != nil && string(old) != string(next) {
		return nil, Errorf("spec", "an image cannot be changed once created (only its labels): create a new image for a new version")
	}
	return next, nil
}

func init() {
	Register(&KindInfo{
		Kind:          KindImage,
		Plural:        "images",
		NewSpec:       func() Spec { return new(ImageSpec) },
		NewStatus:     func() any { return new(ImageStatus) },
		InitialStatus: func(time.Time) any { return &ImageStatus{} },
		Revise:        reviseImage,
	})
}
