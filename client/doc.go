// Package client is Kumoi's Go SDK: a thin, typed layer over the controllers'
// HTTP/JSON API (/v1/...). The kumoi CLI, the Starlark scripting layer and the
// chaos harness talk to the cluster only through this package.
//
// Every kind is handled by the same verbs (Create, Get, List, Update, Delete)
// on resource.Object values, plus Action for a VM's verbs, Events for the
// change stream and Status, Cluster and RemoveServer for the control plane.
//
// # Typed objects
//
// Client.VMs and Client.Hosts are typed layers over those verbs: they take
// and return *VM and *Host, which hold the object as read together with its
// decoded spec and status (resource.VMSpec and resource.VMStatus,
// resource.HostSpec and resource.HostStatus):
//
//	vms := c.VMs()
//	vm, err := vms.Create(ctx, "web-1", resource.VMSpec{CPUs: 2, MemoryMiB: 2048}, map[string]string{"app": "web"})
//	vm, err = vms.Wait(ctx, "web-1", resource.PhaseRunning)
//	fmt.Println(vm.Name(), vm.Phase(), vm.Status.Host)
//
// VMs has Create, Get, List, Update, Modify, Delete, the actions Start,
// Stop, Suspend, Resume and Reboot (POST /v1/vms/{name}/{action}; the
// server checks the VM's phase and refuses with a 409, ErrConflict, what the
// phase forbids), and Wait, which blocks until a VM reaches a phase using
// blocking queries, not polling. Hosts has Get, List, Update, Modify, Drain,
// Enable and VMs (the VMs placed on a host). Update is a compare-and-set on
// the ModifyIndex that was read; Modify, Drain and Enable are
// read-change-write loops that retry a lost compare-and-set up to
// ModifyAttempts times and write nothing when nothing changes.
//
// Client.Networks, Client.Images and Client.Volumes are the same layer
// over networks, the image catalog and volumes (*Network, *Image,
// *Volume): Create, Get, List, Update, Modify and Delete; Volumes also has
// Resize (grow, with compare-and-set), Attach and Detach. Client.AttachVolume
// and Client.DetachVolume change a VM's disks with a compare-and-set
// read-modify-write of its spec; VM.Addresses, VM.MACs and VM.Volumes read
// its NICs and disks. A worker sends its VM and resource reports with
// ReportAll.
//
//	net, err := c.Networks().Create(ctx, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24"}, nil)
//	vm, err := c.VMs().Create(ctx, "web", resource.VMSpec{CPUs: 1, MemoryMiB: 512,
//		NICs: []resource.NIC{{Network: "net1"}}, Disks: []resource.Disk{{Image: "debian", SizeMiB: 2048}}}, nil)
//	fmt.Println(vm.Addresses(), vm.MACs(), vm.Volumes())
//
// To act on many objects at once, combine these with the parallel
// skeletons of package skel (see the ExampleVMs_Stop_parallel example).
//
// # Blocking queries
//
// A read with QueryOptions.WaitIndex set to the QueryMeta.Index of an
// earlier read blocks on the server until the state changes after that
// index (or QueryOptions.WaitTime passes). VMs.Wait is this loop.
//
// # Addresses and retries
//
// A Client is given the base URLs of one or more controllers. A request is
// sent to the address that last answered and, when a controller cannot be
// reached, to the next one in turn. A 503 answer is tried on the next
// address and then, after a backoff (honouring Retry-After), again, until
// Config.RetryDeadline:
//
//   - reads (GET), worker reports and VM actions (which state an intent)
//     are retried after any transport error and any 503;
//   - other writes (POST create, PUT, DELETE) are retried only when the
//     request cannot have been carried out (a resent CAS write or delete
//     that had been applied would fail with cas_mismatch or not_found): the connection was never made,
//     or the server answered 503 no_leader or a 503 with Retry-After (its
//     promise that nothing was done). Otherwise the error matches
//     ErrUnknownOutcome: read the object to find out.
//
// # Request streams
//
// With Config.Stream, writes go to each controller over one persistent
// connection, many in flight at once (docs/api.md "Request streams"), as
// etcd's clients hold one gRPC connection per member; reads, blocking
// queries and event streams still go over HTTP. Answers, errors, retries
// and failover are the same as over HTTP (a write still queued when its
// stream broke was never sent and goes to the next address). It saves the
// client and the controllers an HTTP exchange per write: for programs that
// write a lot from many goroutines. Call Close when done with the Client.
//
//	c, err := client.New(client.Config{Addrs: addrs, Stream: true})
//	defer c.Close()
//
// # ACL tokens
//
// With ACLs on, every request but Status needs a token: Config.Token is
// sent as "Authorization: Bearer <Token>" on every request (reads, writes,
// event streams). ConfigFromEnv fills Addrs and Token from KUMOI_ADDR and
// KUMOI_TOKEN, as the kumoi CLI does. Client.ACL manages the tokens and
// ACL policies themselves: Bootstrap (once per cluster: the first
// management token), Self (the token sent), Policies and Tokens.
//
//	cfg, err := client.ConfigFromEnv()
//	c, err := client.New(cfg)
//	me, err := c.ACL().Self(ctx)
//	tok, err := c.ACL().Tokens().Create(ctx, client.ACLTokenRequest{Name: "ci", Policies: []string{"web-ops"}})
//	// tok.SecretID is shown this once; the cluster keeps only its hash.
//
// # Errors
//
// An HTTP error answer is returned as *APIError. Use errors.Is with the
// sentinels (ErrNotFound, ErrConflict, ErrCASMismatch, ErrAlreadyExists,
// ErrUnavailable, ErrUnknownOutcome, ErrUnauthenticated (401: no token, or
// an unknown one), ErrPermissionDenied (403: the token does not allow it),
// resource.ErrInvalid) or the helpers IsNotFound, IsConflict,
// IsUnauthenticated and IsPermissionDenied. Errors never contain the
// token. When no controller could be reached at all the
// error is *UnreachableError, which matches ErrUnreachable.
//
// The package must not depend on the server side (fsm, cluster): it speaks the
// wire contract in resource/api.go and nothing else.
package client
