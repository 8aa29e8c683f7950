// Package script is Kumoi's scripting layer: Starlark (go.starlark.net) in
// which the cluster's VMs and hosts are first-class values, with parallel
// skeletons to act on many of them at once, the event stream, and
// event-driven policies. `kumoi run`, `kumoi shell` and the leader's policy
// loop are built on it; docs/scripting.md is the user's guide and the
// reference of the built-ins.
//
// It talks to the cluster only through package client, and runs the
// parallel skeletons with package skel. It must not import the server side
// (fsm, cluster) nor print anywhere but Env.Out.
//
// # Running scripts
//
// A Session holds the global variables that a sequence of runs share:
// Exec runs a file or a snippet, ReadChunk and ExecChunk one statement of
// the shell, Complete completes names and attributes. Run is Exec of a
// new session. Builtins returns the built-ins:
//
//	hosts(selector="")  vms(selector="")  host(name)  vm(name)
//	networks(selector="")  network(name)  images(selector="")  image(name)  volumes(selector="")  volume(name)
//	create_vm(name, cpus=1, memory="256MiB", labels={}, ha="none", networks=[], disks=[], wait=False)
//	pmap(fn, xs, workers=16, fail_fast=False)     pfilter(fn, xs, workers=16, fail_fast=False)
//	pforeach(fn, xs, workers=16, fail_fast=False) preduce(fn, xs, initial, failed=None, fail_fast=False)
//	failures(results)  successes(results)
//	wait_until(fn, timeout="60s")  sleep(duration)  events(kinds=[], since=0)  json
//	rebalance(dry_run=True, max=5)
//
// with Starlark's own (print, len, sorted, fail, …). VM values have the
// attributes name, labels, phase, host, spec, status, reason, index,
// addresses and macs (lists of strings, one per NIC that has one), nics
// (structs network, ip, mac) and disks (structs volume, image, size_mib),
// and the methods start, stop, reboot, suspend, resume, delete, migrate (a
// cold move to another host: stop, move, start; live=True or restart=True
// for a running VM, abort=True, wait=True), abort_migration, refresh and
// wait; Host values have name, labels, state, capacity, allocated,
// schedulable, spec, status, reason, index and vms, drain (migrate=True:
// the leader moves the VMs off; wait=True), enable and refresh. Network values have name, labels, index, spec, status, cidr,
// gateway, mode, allocated, capacity and hosts (host → struct state,
// reason, since); Image values name, labels, index, spec, status, format,
// source, sha256 and hosts; Volume values name, labels, index, spec,
// status, size_mib, size, image, persistent, phase, host, attached_to and
// reason, and the methods attach(vm) (the VM must be stopped; returns the
// VM), detach() (returns the VM it was attached to, or None) and
// resize(size). All three have refresh, delete and set_labels. A value is
// a handle: it holds the object as last
// read, and refresh() and the methods that change the object update it.
// Object returns the resource.Object a value holds.
//
// # Limits and errors
//
// Every run is bounded by Env.MaxSteps Starlark steps, counted over all the
// threads it starts, and by Env.Timeout of wall-clock time; cancelling the
// context stops it too. A stopped script fails with "script stopped: step
// limit of N exceeded" (ErrStepLimit), "… time limit of D exceeded"
// (ErrTimeLimit) or "… interrupted" (ErrInterrupted). Env.MaxAlloc is a
// memory budget: the syntax tree is rewritten (rewrite.go) so that the
// operations that can allocate much in one step charge it first
// (membudget.go), and a run that would pass it fails with "… memory budget
// of N exceeded" (ErrMemoryLimit). Calls nest at most MaxCallDepth deep,
// workers= is at most MaxWorkers, and error messages are cut at
// MaxErrorText with the middle of a deep backtrace elided. Every failure is an
// *Error: a syntax error says file:line:col and shows the offending line;
// a run-time error carries the Starlark backtrace with file:line of each
// frame; a wrong argument names the parameter ("create_vm: for parameter
// cpus: got string, want int").
//
// # Parallel skeletons and threads
//
// pmap, pfilter and pforeach call their function on up to workers items at
// once, each call on its own starlark.Thread (Starlark threads are not
// shareable). Only frozen values cross goroutines: the items, the
// function's closure and defaults and the globals of the module that
// defined it are frozen before the calls start, and the results after.
// VM and Host handles stay usable: freezing them freezes nothing, as the
// objects live in the cluster. preduce is a sequential fold and freezes
// only the items and the function. An item whose call failed yields a
// Failure (.item, .error, .index, .backtrace) in the results; fail_fast=True
// aborts the others and raises the first failure instead.
//
// # Events and policies
//
// An Event is a change of the cluster as a type string: "<kind>.created",
// "<kind>.updated", "<kind>.deleted" (kinds vm, host, network, image,
// volume), "vm.<phase>" when a VM enters a phase ("vm.failed"),
// "volume.<phase>" when a volume does ("volume.missing") and
// "host.<state>" when a host enters a state ("host.down"). An EventMapper derives them from client.Events; a Matcher
// selects them by pattern (a kind such as "vm", an event type, or "*").
//
// A policy is a script that declares what it reacts to and how:
//
//	events = ["vm.failed", "host.down"]
//
//	def on_event(ev):
//	    if ev.type == "vm.failed" and ev.object.labels.get("ha") == "restart":
//	        ev.object.start()
//
// LoadPolicy compiles it, runs its top level and checks both declarations
// (ErrPolicy otherwise). The policy runner — the leader's loop — feeds
// events to (*Policy).Handle for the types the policy Wants:
//
//	p, err := script.LoadPolicy(ctx, "ha", src, script.Env{Client: c})
//	m := script.NewEventMapper()
//	for rev, err := range c.Events(ctx, since, p.ResourceKinds()...) {
//		for _, ev := range m.Events(rev) {
//			if p.Wants(ev.Type) {
//				err := p.Handle(ctx, ev) // an *Error: record it in the policy's status
//			}
//		}
//	}
//
// Handle runs on_event(ev) with ev.type, ev.kind, ev.name, ev.index and
// ev.object (a VM or Host value, or None), under DefaultPolicyMaxSteps and
// DefaultPolicyTimeout unless Env says otherwise. A handler that raises or
// runs away returns an *Error; a panic is recovered. The policy's globals
// are frozen after loading, so handlers keep no state between events.
package script
