package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/skel"
)

// exampleCluster starts the in-process fake API that the examples run
// against: two ready hosts, hv-1 and hv-2, and simulated workers that run
// every VM on hv-1. A real program is given the controllers' addresses
// instead, e.g. "http://10.0.0.1:7400".
func exampleCluster() (addr string, stop func()) {
	s := testapi.Start()
	s.Lifecycle = testapi.Healthy("hv-1")
	for _, h := range []struct{ name, rack string }{{"hv-1", "a"}, {"hv-2", "b"}} {
		_, err := s.PutObject(resource.KindHost, h.name, map[string]string{"rack": h.rack}, resource.HostSpec{},
			resource.HostStatus{State: resource.HostReady, Driver: "sim",
				Capacity: resource.Resources{CPUs: 16, MemoryMiB: 65536}})
		if err != nil {
			log.Fatal(err)
		}
	}
	return s.URL, s.Close
}

// Create a VM, wait until it runs, stop it; an action that its phase
// forbids is refused with a conflict.
func ExampleClient_VMs() {
	addr, stop := exampleCluster()
	defer stop()
	ctx := context.Background()

	c, err := client.New(client.Config{Addrs: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	vms := c.VMs()

	vm, err := vms.Create(ctx, "web-1", resource.VMSpec{CPUs: 2, MemoryMiB: 2048}, map[string]string{"app": "web"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(vm.Name(), vm.Phase(), vm.Spec.Power)

	vm, err = vms.Wait(ctx, "web-1", resource.PhaseRunning)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(vm.Name(), vm.Phase(), "on", vm.Status.Host)

	if _, err := vms.Stop(ctx, "web-1", false); err != nil {
		log.Fatal(err)
	}
	vm, err = vms.Wait(ctx, "web-1", resource.PhaseStopped)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(vm.Name(), vm.Phase())

	_, err = vms.Suspend(ctx, "web-1")
	fmt.Println(client.IsConflict(err), err)
	// Output:
	// web-1 pending running
	// web-1 running on hv-1
	// web-1 stopped
	// true vm "web-1" is stopped: operation not allowed in this phase: only a running VM can be suspended
}

// Resize a VM with a read-modify-write that is safe against concurrent
// changes: Modify re-reads and retries when the compare-and-set loses.
func ExampleVMs_Modify() {
	addr, stop := exampleCluster()
	defer stop()
	ctx := context.Background()
	c, err := client.New(client.Config{Addrs: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.VMs().Create(ctx, "db", resource.VMSpec{CPUs: 2, MemoryMiB: 4096}, nil); err != nil {
		log.Fatal(err)
	}

	vm, err := c.VMs().Modify(ctx, "db", func(vm *client.VM) error {
		vm.Spec.CPUs *= 2
		vm.Object.Labels["tier"] = "backend"
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(vm.Name(), vm.Spec.CPUs, vm.Object.Labels)
	// Output:
	// db 4 map[tier:backend]
}

// List the hosts, drain one, and see what runs where.
func ExampleClient_Hosts() {
	addr, stop := exampleCluster()
	defer stop()
	ctx := context.Background()
	c, err := client.New(client.Config{Addrs: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range []string{"api-1", "api-2"} {
		if _, err := c.VMs().Create(ctx, name, resource.VMSpec{CPUs: 1, MemoryMiB: 512}, nil); err != nil {
			log.Fatal(err)
		}
		if _, err := c.VMs().Wait(ctx, name, resource.PhaseRunning); err != nil {
			log.Fatal(err)
		}
	}

	hosts, _, err := c.Hosts().List(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range hosts {
		fmt.Println(h.Name(), h.State(), h.Status.Capacity.CPUs, "cpus, rack", h.Object.Labels["rack"])
	}

	h, err := c.Hosts().Drain(ctx, "hv-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(h.Name(), "schedulable:", h.Schedulable())

	on, _, err := c.Hosts().VMs(ctx, "hv-1", nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, vm := range on {
		fmt.Println(vm.Name(), vm.Phase(), "on", vm.Status.Host)
	}
	// Output:
	// hv-1 ready 16 cpus, rack a
	// hv-2 ready 16 cpus, rack b
	// hv-1 schedulable: false
	// api-1 running on hv-1
	// api-2 running on hv-1
}

// Stop every VM labelled app=web, four at a time, with the parallel
// skeletons of package skel; one failure does not stop the others.
func ExampleVMs_Stop_parallel() {
	addr, stop := exampleCluster()
	defer stop()
	ctx := context.Background()
	c, err := client.New(client.Config{Addrs: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		if _, err := c.VMs().Create(ctx, name, resource.VMSpec{CPUs: 1, MemoryMiB: 512}, map[string]string{"app": "web"}); err != nil {
			log.Fatal(err)
		}
	}

	web, _, err := c.VMs().List(ctx, &client.QueryOptions{Selector: "app=web"})
	if err != nil {
		log.Fatal(err)
	}
	web = append(web, &client.VM{Object: &resource.Object{Name: "web-9"}}) // deleted meanwhile
	rs, err := skel.Map(ctx, web, func(ctx context.Context, vm *client.VM) (*client.VM, error) {
		if _, err := c.VMs().Stop(ctx, vm.Name(), false); err != nil {
			return nil, err
		}
		return c.VMs().Wait(ctx, vm.Name(), resource.PhaseStopped)
	}, skel.Options{Workers: 4})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range skel.Successes(rs) {
		fmt.Println(r.Value.Name(), r.Value.Phase())
	}
	for _, r := range skel.Failures(rs) {
		fmt.Println(r.Item.Name(), "failed:", r.Err)
	}
	// Output:
	// web-1 stopped
	// web-2 stopped
	// web-3 stopped
	// web-9 failed: vm "web-9" not found
}
