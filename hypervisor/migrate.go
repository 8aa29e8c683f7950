package hypervisor

import (
	"context"
	"time"
)

// Migrator is the optional interface of a driver that migrates running
// domains between hosts, live (a driver that has CapLiveMigration
// implements it). The worker drives it from the cluster's state
// (docs/scheduling.md, "Live migration"): the target host prepares, the
// source migrates, and the domain belongs to the target only once the
// hypervisor has confirmed it runs there.
//
// A migration moves the domain with its tag (VM id, epoch, cluster); the
// target's worker retags it (Define with the new epoch) when the epoch
// passes to it.
type Migrator interface {
	// PrepareIncoming readies this host to receive the domain spec
	// describes (its networks and volumes are the worker's business and
	// exist before it is called) and returns the URI the source's
	// hypervisor migrates to. Idempotent.
	PrepareIncoming(ctx context.Context, spec DomainSpec) (uri string, err error)
	// MigrateOut moves the running domain name, live, to the hypervisor
	// at uri and returns once the hypervisor confirms the guest runs
	// there: the domain is then gone from this host (stopped and
	// undefined). On an error the guest runs here as before (the
	// hypervisor rolled back), unless the error says otherwise
	// (ErrMigrationUnknown). Cancelling ctx aborts the migration.
	MigrateOut(ctx context.Context, name, uri string, opts MigrateOptions) (MigrateResult, error)
	// Incoming reports whether name arrived here and runs (the migration
	// is complete on this host's side: the hypervisor resumed the guest
	// here), as opposed to still arriving (paused) or absent.
	Incoming(ctx context.Context, name string) (running bool, err error)
	// FinishIncoming makes an arrived domain this host's: it resumes it
	// if the driver leaves arrived guests paused until then (sim). A
	// no-op for a domain that already runs.
	FinishIncoming(ctx context.Context, name string) error
	// AbortIncoming removes what PrepareIncoming made and any domain that
	// arrived for a migration that ended without moving it (destroyed
	// and undefined). A no-op when there is none.
	AbortIncoming(ctx context.Context, name string) error
}

// MigrateOptions tune MigrateOut.
type MigrateOptions struct {
	// CopyStorage copies the domain's disks that are not shared (the
	// target has created empty ones of the same size).
	CopyStorage bool
	// MaxDowntime bounds the pause at the switch-over (0: the
	// hypervisor's default).
	MaxDowntime time.Duration
	// BandwidthMiBs caps the migration's bandwidth (0: unlimited).
	BandwidthMiBs int
}

// MigrateResult is what a migration measured.
type MigrateResult struct {
	// Downtime is how long the guest was paused at the switch-over (0:
	// the hypervisor did not say).
	Downtime time.Duration
}
