package libvirt

import (
	"io"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Options configure a libvirt driver.
type Options struct {
	// URI is the libvirt connection URI (default "qemu:///system"). Tests
	// use "test:///path/to/host.xml", one file per simulated host.
	URI string
	// Host names this host in the observation log (default: os.Hostname).
	Host string
	// CPUs and MemoryMiB override the capacity Stats reports (default: the
	// node's, from virNodeGetInfo).
	CPUs      int
	MemoryMiB int64
	// DomainType is the <domain type=...> of defined domains (default: kvm
	// when the host offers it, else the first type it offers: qemu for TCG,
	// test for the test driver).
	DomainType string
	// ConsoleLogDir, if set, makes each domain's serial console also log to
	// DIR/<domain>.log (written by libvirt, so the directory must be
	// writable by it).
	ConsoleLogDir string
	// StorageDir is the directory of the storage pool "kumoi" the driver
	// defines on first use (default hypervisor.DefaultStorageDir,
	// /var/lib/kumoi/storage/volumes). An existing pool of that name is
	// used where it is.
	StorageDir string
	// MigrationURI is the libvirt URI by which a peer host's libvirtd
	// reaches this host's libvirtd in a peer-to-peer live migration
	// (qemu+tcp://HOST/system, qemu+tls://HOST/system,
	// qemu+ssh://root@HOST/system): what PrepareIncoming hands the source.
	// Default: URI itself when it names a remote host or a unix socket
	// (?socket=...: usable by another libvirtd on the same machine);
	// with neither (qemu:///system) the driver has no migration URI and
	// does not offer CapLiveMigration.
	MigrationURI string
	// MigrationAddress is where the QEMU migration data stream of an
	// incoming migration connects: tcp://ADDR[:PORT] (or ADDR[:PORT]),
	// sent to the source as the migrate URI; when ADDR is an IP address
	// the incoming migration listens on it only (else on qemu.conf's
	// migration_address, by default every address). Default: none
	// (libvirt uses the target's migration_host from qemu.conf, else its
	// hostname, and a port from migration_port_min..max).
	MigrationAddress string
	// ReconnectMin and ReconnectMax bound the backoff between reconnect
	// attempts (default 100ms and 5s).
	ReconnectMin, ReconnectMax time.Duration
	// KeepAliveInterval and KeepAliveCount detect a dead remote connection
	// (default 5s and 3; ignored by drivers without keepalive).
	KeepAliveInterval int
	KeepAliveCount    uint
	// EventBuffer bounds undelivered events (see driverutil.Queue).
	EventBuffer int
	// ObservationLog, if set, receives one JSON line
	// (hypervisor.Observation) per domain start and stop.
	ObservationLog io.Writer
	// Logger (default: none).
	Logger hclog.Logger
}

// Namespace is the XML namespace of Kumoi's domain metadata element.
const Namespace = "https://kumoi.dev/xmlns/domain/1"

// MetadataKey is the namespace prefix libvirt uses for the element.
const MetadataKey = "kumoi"
