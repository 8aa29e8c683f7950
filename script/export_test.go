package script

// Test helpers shared with the external test package (script_test), whose
// tests start a dev cluster: package cluster imports this package.
type SyncBuffer = syncBuffer

var WantError = wantError

var (
	VMState   = vmState
	HostState = hostState
)
