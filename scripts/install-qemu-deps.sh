#!/usr/bin/env bash
# install-qemu-deps.sh — what `make test-qemu` needs beyond install-deps.sh,
# and a running libvirt daemon. Run as root; idempotent.
#
#   1. Debian packages: QEMU (TCG is enough, no KVM needed) and qemu-img,
#      the libvirt daemon with its QEMU driver, a static busybox for the
#      guest, and for the network-and-storage test dnsmasq (a libvirt
#      network's DHCP), iptables (its nat rules), iproute2 (ip netns) and
#      e2fsprogs (mke2fs builds the test's disk image);
#   2. a Debian kernel image for the guest: the newest /boot/vmlinuz-* if
#      there is one, else the package linux-image-amd64 depends on,
#      downloaded with apt-get and unpacked (not installed) into
#      $KERNEL_ROOT (the test looks there);
#   3. /dev/kvm group-accessible as udev would leave it (without udev,
#      libvirt sees a root-only /dev/kvm as "KVM gone" and re-probes QEMU on
#      every call, which makes each define take ~30 s);
#   4. virtlogd and libvirtd started if they are not running (systemd if it
#      is PID 1, else as daemons, known by /run/virtlogd.pid and
#      /run/libvirtd.pid).
#
# test/qemu's second libvirtd needs nothing more: unshare and mount
# (util-linux) and the QEMU driver installed here (its variant in a
# network namespace also loads the network and storage drivers, which
# libvirt-daemon ships).
#
#   --restart-libvirtd   only restart libvirtd (the reconnect test uses it)
set -euo pipefail

APT_PACKAGES=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu busybox-static dnsmasq-base iptables iproute2 e2fsprogs)
KERNEL_ROOT="${KUMOI_QEMU_KERNEL_ROOT:-/var/lib/kumoi-test-qemu/kernel}"

log() { printf 'install-qemu-deps: %s\n' "$*" >&2; }

have_systemd() { [[ "$(ps -p 1 -o comm= 2>/dev/null)" == systemd ]]; }

# The system daemons started without systemd are known by their pid files,
# not by name: other libvirtd processes may run on the machine (tests start
# their own: internal/libvirtd, test/qemu's second daemon), and they must be
# neither taken for the system's nor killed.
daemon_pid() { # name -> pid of the system's daemon, if it runs
	local pid
	pid="$(cat "/run/$1.pid" 2>/dev/null)" || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
		[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1" ]] && echo "$pid"
}

start_libvirtd() {
	if have_systemd; then
		systemctl start virtlogd libvirtd
	else
		daemon_pid virtlogd >/dev/null || /usr/sbin/virtlogd -d
		daemon_pid libvirtd >/dev/null || /usr/sbin/libvirtd -d
	fi
	for _ in $(seq 1 100); do
		if virsh -c qemu:///system version >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	log "libvirtd did not answer on qemu:///system"
	return 1
}

restart_libvirtd() {
	if have_systemd; then
		systemctl restart libvirtd
	else
		if pid="$(daemon_pid libvirtd)"; then
			kill "$pid"
			# libvirtd forces its own shutdown after 30 s; a daemon still
			# there after 35 s is killed, or start_libvirtd would take the
			# dying one for a running one.
			for _ in $(seq 1 350); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			if kill -0 "$pid" 2>/dev/null; then
				log "libvirtd $pid did not stop within 35 s: killing it"
				kill -9 "$pid"
				for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			fi
		fi
	fi
	start_libvirtd
}

if [[ "$(id -u)" -ne 0 ]]; then
	log "run as root"
	exit 1
fi

if [[ "${1:-}" == "--restart-libvirtd" ]]; then
	restart_libvirtd
	exit 0
fi

# --- 1. packages ---------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
	if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
		missing+=("$pkg")
	fi
done
updated=0
if ((${#missing[@]} > 0)); then
	log "installing ${missing[*]}"
	apt-get update -q
	updated=1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- 2. a guest kernel ---------------------------------------------------------
if ! compgen -G "/boot/vmlinuz-*" >/dev/null && ! compgen -G "$KERNEL_ROOT/boot/vmlinuz-*" >/dev/null; then
	((updated)) || apt-get update -q
	pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')"
	if [[ -z "$pkg" ]]; then
		log "cannot resolve the kernel package behind linux-image-amd64"
		exit 1
	fi
	log "downloading $pkg and unpacking it into $KERNEL_ROOT"
	tmp="$(mktemp -d)"
	chmod 0755 "$tmp"
	(cd "$tmp" && apt-get download -q "$pkg")
	mkdir -p "$KERNEL_ROOT"
	dpkg-deb -x "$tmp"/"$pkg"_*.deb "$KERNEL_ROOT"
	rm -rf "$tmp"
fi

# --- 3. /dev/kvm as udev leaves it ---------------------------------------------
if [[ -c /dev/kvm ]] && getent group kvm >/dev/null; then
	chgrp kvm /dev/kvm && chmod 0660 /dev/kvm || log "could not fix /dev/kvm permissions (libvirt will be slow)"
fi

# --- 4. the daemons ---------------------------------------------------------------
start_libvirtd
log "ready: $(virsh -c qemu:///system version 2>/dev/null | tr '\n' ' ')"
