package worker

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/internal/tlsutil"
	"github.com/kumoi/kumoi/resource"
)

// Defaults of a worker.
const (
	DefaultFenceAfter     = 2500 * time.Millisecond
	DefaultHealthInterval = 2 * time.Second
	DefaultShutdownGrace  = 10 * time.Second
)

// Config configures a worker: the agent on a hypervisor host that makes
// its domains match the VMs placed on it.
type Config struct {
	NodeID string // the host's name
	// GossipName is the worker's memberlist name (default NodeID; a worker
	// sharing a process with a controller needs another one).
	GossipName string
	BindIP     string
	GossipPort int
	Join       []string
	Driver     hypervisor.Driver
	DriverName string // "sim" or "libvirt"
	// Labels become the host object's labels when it is first created
	// (gossip metadata is small: keep them few and short).
	Labels map[string]string
	// GossipSecurity: the gossip keyring (--encrypt) and TLS gossip
	// streams, the same as the controllers' (docs/gossip.md).
	GossipSecurity membership.Security
	// CPUs and MemoryMiB override the capacity the driver reports.
	CPUs      int
	MemoryMiB int64
	// FenceAfter: a worker that has not reached a controller quorum for
	// this long stops its VMs itself (default 3s; below the controllers'
	// host-down grace).
	FenceAfter time.Duration
	// HealthInterval is how often an unhealthy driver is retried (2s).
	HealthInterval time.Duration
	// ShutdownGrace is how long a guest may take to power off (10s).
	ShutdownGrace time.Duration
	// DataDir is where the worker keeps what it must remember across
	// restarts: the identity of its cluster (ClusterIDFile). Empty: it
	// keeps nothing and learns its cluster anew at every start.
	DataDir string
	// FenceGuard is how this host's domains are guarded when the worker
	// is gone (GuardSpawn, GuardExternal or GuardOff; docs/ha.md). A
	// guard needs DataDir. Default: GuardOff.
	FenceGuard string
	// Token is the ACL token the worker's API calls carry (a node token
	// for this host is the least it needs; docs/security.md). A spawned
	// fence guard gets it through its environment (KUMOI_TOKEN), never
	// on its command line.
	Token string
	// GuardCommand starts a guard (GuardSpawn): e.g. the kumoi binary
	// with "fence-guard" and its flags.
	GuardCommand []string
	// TLS, when its files are given (all three or none), makes the
	// worker call the controllers over https with its certificate,
	// requiring theirs to be server certificates of the CA (docs/tls.md).
	TLS tlsutil.Files
	// ImageDir is the one directory this host boots files from (disk
	// images, kernels, initrds; hypervisor.DefaultImageDir when empty).
	// A VM's boot paths are resolved in it (hypervisor.ImageDir): a path
	// outside it, a symbolic link out of it, or anything but a regular
	// file fails the VM and its domain is never defined.
	ImageDir string
	// StorageDir is where the worker keeps what it fetches for volumes:
	// the image cache (StorageDir/images). Empty: DataDir/storage, or a
	// new private directory in the system's temporary directory when
	// there is no DataDir either.
	StorageDir string
	// ImageFetchTimeout bounds one image download or verification
	// (DefaultImageFetchTimeout); ImageMaxBytes bounds a download whose
	// image gives no size_bytes (DefaultImageMaxBytes).
	ImageFetchTimeout time.Duration
	ImageMaxBytes     int64
	// MigrationTimeout bounds one outgoing migration of a VM
	// (--migration-timeout, DefaultMigrationTimeout): past it the
	// migration is cancelled and the VM stays here.
	MigrationTimeout time.Duration
	Logger           hclog.Logger

	tlsClient *tls.Config         // loaded from TLS by validate
	imageDir  hypervisor.ImageDir // ImageDir, checked
	// tempStorage: validate made StorageDir, a private temporary
	// directory, which the worker removes when it stops.
	tempStorage bool
}

// validate checks cfg and fills in the defaults.
func (cfg *Config) validate() error {
	if cfg.NodeID == "" {
		return errors.New("--node-id is required (the host's name)")
	}
	if err := resource.ValidateName(cfg.NodeID); err != nil {
		return fmt.Errorf("--node-id: a worker's id is its host's name: %w", err)
	}
	if cfg.Driver == nil {
		return errors.New("worker: no hypervisor driver")
	}
	if err := resource.ValidateLabels(cfg.Labels); err != nil {
		return fmt.Errorf("--label: %w", err)
	}
	if m, _ := json.Marshal(cfg.Labels); len(m) > 300 {
		return fmt.Errorf("--label: %d bytes of labels; gossip metadata allows about 300", len(m))
	}
	if cfg.GossipName == "" {
		cfg.GossipName = cfg.NodeID
	}
	if cfg.BindIP == "" {
		cfg.BindIP = "127.0.0.1"
	}
	if cfg.GossipPort == 0 {
		cfg.GossipPort = membership.DefaultGossipPort
	}
	if cfg.FenceAfter == 0 {
		cfg.FenceAfter = DefaultFenceAfter
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.FenceGuard == "" {
		cfg.FenceGuard = GuardOff
	}
	imageDir, err := hypervisor.NewImageDir(cfg.ImageDir)
	if err != nil {
		return err
	}
	cfg.imageDir, cfg.ImageDir = imageDir, imageDir.Dir()
	switch {
	case cfg.StorageDir != "" && !filepath.IsAbs(cfg.StorageDir):
		return fmt.Errorf("--storage-dir %q must be an absolute path", cfg.StorageDir)
	case cfg.StorageDir != "":
		cfg.StorageDir = filepath.Clean(cfg.StorageDir)
	case cfg.DataDir != "":
		cfg.StorageDir = filepath.Join(cfg.DataDir, "storage")
	default:
		// A private new directory (0700, a name nobody could take
		// first): an embedded worker with neither (tests).
		dir, err := os.MkdirTemp("", "kumoi-storage-"+cfg.NodeID+"-")
		if err != nil {
			return fmt.Errorf("storage directory: %w", err)
		}
		cfg.StorageDir, cfg.tempStorage = dir, true
	}
	if cfg.ImageFetchTimeout < 0 || cfg.ImageMaxBytes < 0 {
		return errors.New("--image-fetch-timeout and --image-max-size must not be negative")
	}
	if cfg.ImageFetchTimeout == 0 {
		cfg.ImageFetchTimeout = DefaultImageFetchTimeout
	}
	if cfg.ImageMaxBytes == 0 {
		cfg.ImageMaxBytes = DefaultImageMaxBytes
	}
	if cfg.MigrationTimeout < 0 {
		return errors.New("--migration-timeout must not be negative")
	}
	if cfg.MigrationTimeout == 0 {
		cfg.MigrationTimeout = DefaultMigrationTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.TLS.Enabled() {
		c, err := cfg.TLS.ClientConfigFor(tlsutil.RoleServer)
		if err != nil {
			return err
		}
		cfg.tlsClient = c
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
	}
	return nil
}
