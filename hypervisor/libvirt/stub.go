//go:build !libvirt_dlopen

package libvirt

import (
	"fmt"

	"github.com/kumoi/kumoi/hypervisor"
)

// Driver is a placeholder in builds without the libvirt_dlopen tag.
type Driver struct{ hypervisor.Driver }

// New fails: this binary was built without libvirt support.
func New(opts Options) (*Driver, error) {
	return nil, fmt.Errorf("libvirt driver: %w: built without -tags libvirt_dlopen", hypervisor.ErrUnsupported)
}
