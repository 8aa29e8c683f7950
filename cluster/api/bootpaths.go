package api

import (
	"encoding/json"
	"strings"

	"github.com/kumoi/kumoi/resource"
)

// checkBootHost refuses (400) a VM spec whose absolute boot path lies
// outside the image directory of host (as its worker published it in the
// host's status.image_dir). A host that is unknown, or publishes none,
// refuses nothing here: its worker resolves every boot path anyway, and a
// refused one fails the VM with the reason.
func (a *httpAPI) checkBootHost(spec json.RawMessage, host string) error {
	if host == "" {
		return nil
	}
	var s resource.VMSpec
	if err := json.Unmarshal(spec, &s); err != nil || s.Boot == nil {
		return nil
	}
	ho, err := a.b.FSM().State().Get(nil, resource.KindHost, host)
	if err != nil || ho == nil {
		return nil
	}
	hs, err := resource.DecodeStatus[resource.HostStatus](ho)
	if err != nil {
		return nil
	}
	if field, p := resource.BootPathOutside(s.Boot, hs.ImageDir); field != "" {
		return badArg("spec.boot."+field, "%q is outside the image directory %s of host %s (its worker's --image-dir): give a name in that directory, e.g. %q",
			p, hs.ImageDir, host, baseName(p))
	}
	return nil
}

// checkBootPlaced is checkBootHost for the host the VM name is placed on
// now (none: nothing to check).
func (a *httpAPI) checkBootPlaced(spec json.RawMessage, name string) error {
	o, err := a.b.FSM().State().Get(nil, resource.KindVM, name)
	if err != nil || o == nil {
		return nil
	}
	st, err := resource.DecodeStatus[resource.VMStatus](o)
	if err != nil {
		return nil
	}
	return a.checkBootHost(spec, st.Host)
}

// checkMigrateBoot is checkBootHost for VM name's current spec and the
// host it is to move to.
func (a *httpAPI) checkMigrateBoot(name, host string) error {
	o, err := a.b.FSM().State().Get(nil, resource.KindVM, name)
	if err != nil || o == nil {
		return nil
	}
	return a.checkBootHost(o.Spec, host)
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// checkImageFile refuses (400, field spec.file) an image whose file is an
// absolute path outside the image directory of a host that publishes one
// (status.image_dir): that host's worker would refuse it when a VM there
// needs the image. Relative names are inside every image directory.
func (a *httpAPI) checkImageFile(spec json.RawMessage) error {
	var s resource.ImageSpec
	if err := json.Unmarshal(spec, &s); err != nil || !strings.HasPrefix(s.File, "/") {
		return nil
	}
	hosts, err := a.b.FSM().State().List(nil, resource.KindHost, nil)
	if err != nil {
		return nil
	}
	for _, ho := range hosts {
		hs, err := resource.DecodeStatus[resource.HostStatus](ho)
		if err != nil || hs.ImageDir == "" {
			continue
		}
		if field, p := resource.BootPathOutside(&resource.Boot{Image: s.File}, hs.ImageDir); field != "" {
			return badArg("spec.file", "%q is outside the image directory %s of host %s (its worker's --image-dir): give a name in that directory, e.g. %q",
				p, hs.ImageDir, ho.Name, baseName(p))
		}
	}
	return nil
}
