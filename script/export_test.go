package script

import "github.com/kumoi/kumoi/resource"

// Test helpers shared with the external test package (script_test), whose
// tests start a dev cluster: package cluster imports this package.
type SyncBuffer = syncBuffer

var WantError = wantError

// VMState and HostState are what cluster_test.go decodes objects with:
// the same lenient decode the scripts use.
var (
	VMState   = resource.VMStateOf
	HostState = resource.HostStateOf
)
