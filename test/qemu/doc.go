// Package qemu holds the opt-in tests of Kumoi on real QEMU (make
// test-qemu, KUMOI_TEST_QEMU=1, as root): real `kumoi agent` processes
// (internal/testcluster) whose libvirt workers run TCG guests on the
// system's libvirtd (qemu:///system) and on a second privileged libvirtd
// with the QEMU driver that Daemon starts in a private mount namespace. It
// also builds the guest they boot (Guest: a Debian kernel and a busybox
// initramfs), which the driver's own QEMU tests (hypervisor/libvirt) share.
//
// Guest networks never touch the machine's: the network-and-storage test
// (TestQEMUNetworkVolume) runs its libvirtd, with the network and storage
// drivers, inside a network namespace it creates (StartNetDaemonT: only lo
// at first, no link or route out, deleted at the end), so its nat network,
// dnsmasq and guests live there; the Kumoi worker stays in the host's
// namespace and talks to that libvirtd on its unix socket. Its guest
// (NewNetGuest) asks DHCP for an address with busybox udhcpc and keeps a
// marker file on its disk, and says both on its serial console, which the
// test reads through the domain's pty (Console).
//
// scripts/install-qemu-deps.sh installs QEMU, libvirtd, busybox-static and
// a kernel and starts the system daemons; then:
//
//	KUMOI_TEST_QEMU=1 KUMOI_BIN=$PWD/bin/kumoi go test -tags libvirt_dlopen -count=1 -v ./test/qemu/
package qemu
