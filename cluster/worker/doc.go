// Package worker is the agent on a hypervisor host. It joins the gossip
// pool once its hypervisor driver is healthy, advertises the host's
// capacity, and reconciles: it reads the host and the VMs placed on it from
// the controllers (linearizable reads through the client SDK), makes the
// real domains match (define, start, stop, suspend, reboot, destroy what is
// no longer its own), reports what really happened, and fences (destroys
// every Kumoi domain of its cluster here) when it loses the controller quorum for longer
// than fence-after or learns that its host was marked gone.
//
// Where things are:
//   - worker.go     Start, Shutdown, Kill, the run sequence
//   - config.go     Config and its defaults
//   - gossip.go     joining the pool, the advertised metadata, the API client
//   - reconcile.go  the reconcile loop and one pass over the host (converge)
//   - vm.go         one VM: its domain's power, changes behind Kumoi's back, reports
//   - netstore.go   the networks and volumes of the VMs placed here: read,
//     ensured before the VMs (DHCP hosts, bridge names), removed when no VM
//     here needs them, their states reported; a VM's disks and NICs
//   - images.go     the image cache: file images verified in place, url
//     images downloaded in the background (bounded), verified, cached
//   - report.go     one report request for VM reports and resource states
//   - shutdowns.go  graceful shutdowns running in the background
//   - fence.go      fencing and removing stale domains
//   - identity.go   the cluster identity: data directory, learning it,
//     the refusal, foreign domains (another cluster's: never touched)
//
// The worker talks to the controllers only through package client and
// gossip (cluster/membership). It must not import fsm, hashicorp/raft,
// cluster/controller, cluster/api or cluster/agent: a worker runs on a
// hypervisor host and knows nothing of how the controllers keep state.
package worker
