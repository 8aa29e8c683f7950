package hypervisor

import "errors"

// Sentinel errors. Drivers wrap them with %w and a message that names the
// domain and the operation; callers test with errors.Is.
var (
	// ErrNotFound: no domain has that name.
	ErrNotFound = errors.New("domain not found")
	// ErrExists: the name is taken by a domain that belongs to a different
	// VM (another VM id) or to nobody Kumoi knows (a foreign domain).
	ErrExists = errors.New("domain already exists")
	// ErrInvalidState: the domain is in a state the operation cannot start
	// from (suspend a stopped domain, undefine a running one).
	ErrInvalidState = errors.New("invalid domain state for operation")
	// ErrUnavailable: the hypervisor cannot be reached (lost connection, a
	// reconnect in progress). The operation may be retried later; one that
	// was in flight when the connection broke may or may not have happened.
	ErrUnavailable = errors.New("hypervisor unavailable")
	// ErrUnsupported: the driver does not have the capability the operation
	// needs (see Capabilities).
	ErrUnsupported = errors.New("operation not supported by driver")
	// ErrInvalidSpec: a DomainSpec failed validation; nothing was defined.
	ErrInvalidSpec = errors.New("invalid domain spec")
	// ErrClosed: the driver was closed.
	ErrClosed = errors.New("driver closed")
	// ErrMissingResource: a network or volume that an operation needs
	// does not exist on the host (or the network is not active): Start
	// of a domain whose NIC names a network removed behind Kumoi's back,
	// or whose disk is a volume removed behind its back.
	ErrMissingResource = errors.New("network or volume missing")
	// ErrMigrationUnknown: a migration's outcome is not known (the
	// connection to the hypervisor broke while it ran): the guest may
	// run on either host. The worker says nothing of the migration until
	// it knows (the domain runs here again, or the target sees it run).
	ErrMigrationUnknown = errors.New("migration outcome unknown")
)
