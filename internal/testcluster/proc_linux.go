package testcluster

import "syscall"

// sysProcAttr puts a node in its own process group (a Ctrl-C meant for the
// test does not reach it half-way through a scenario) and kills it if the
// test process dies, so no node outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
