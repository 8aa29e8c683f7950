// Package qemu holds the opt-in tests of Kumoi on real QEMU (make
// test-qemu, KUMOI_TEST_QEMU=1, as root): real `kumoi agent` processes
// (internal/testcluster) whose libvirt workers run TCG guests on the
// system's libvirtd (qemu:///system) and on a second privileged libvirtd
// with the QEMU driver that Daemon starts in a private mount namespace. It
// also builds the guest they boot (Guest: a Debian kernel and a busybox
// initramfs), which the driver's own QEMU tests (hypervisor/libvirt) share.
//
// scripts/install-qemu-deps.sh installs QEMU, libvirtd, busybox-static and
// a kernel and starts the system daemons; then:
//
//	KUMOI_TEST_QEMU=1 KUMOI_BIN=$PWD/bin/kumoi go test -tags libvirt_dlopen -count=1 -v ./test/qemu/
package qemu
