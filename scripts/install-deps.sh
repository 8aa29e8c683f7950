#!/usr/bin/env bash
# install-deps.sh — install what building, testing and running Kumoi needs.
#
# Idempotent and quick when everything is already present:
#   1. Debian packages the tests and drivers use (libvirt's client library and
#      virsh for the libvirt driver, libvirtd for the tests whose domains must
#      outlive a worker (they start their own, serving only libvirt's test
#      driver: no system service is enabled), iptables and iproute2 for the
#      chaos harness's partitions, etcd-server for make bench-compare,
#      prometheus for promtool, which checks deploy/prometheus's rules),
#      installed with apt-get when running as root, with no service of
#      theirs started (a policy-rc.d refuses every start while installing);
#   2. the Go modules listed in go.mod (go mod download);
#   3. staticcheck, pinned to STATICCHECK_VERSION, into $(go env GOPATH)/bin.
#
# Environment:
#   KUMOI_SKIP_APT=1      do not check or install Debian packages
#   STATICCHECK_VERSION   staticcheck module version (default below)
set -euo pipefail

STATICCHECK_VERSION="${STATICCHECK_VERSION:-v0.8.2}"
# etcd-server: make bench-compare runs Debian's etcd beside Kumoi;
# prometheus: its promtool checks the alert rules (make test). Neither's
# service is started by the install (policy-rc.d below): the benchmark and
# the tests run their own.
# systemd: systemd-analyze checks deploy/systemd's units (make test);
# chromium: the web console's browser test (test/console, headless).
APT_PACKAGES=(libvirt0 libvirt-clients libvirt-daemon iptables iproute2 etcd-server prometheus systemd chromium)

log() { printf 'install-deps: %s\n' "$*" >&2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --- 1. Debian packages ------------------------------------------------------
if [[ "${KUMOI_SKIP_APT:-}" == "1" ]]; then
	log "KUMOI_SKIP_APT=1: not checking Debian packages"
else
	missing=()
	for pkg in "${APT_PACKAGES[@]}"; do
		status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
		if [[ "$status" != "install ok installed" ]]; then
			missing+=("$pkg")
		fi
	done
	if ((${#missing[@]} > 0)); then
		if [[ "$(id -u)" -eq 0 ]]; then
			log "installing Debian packages: ${missing[*]}"
			apt-get update -q
			# Refuse every service start while installing (invoke-rc.d and
			# deb-systemd-invoke ask policy-rc.d; 101: action forbidden),
			# unless the machine has a policy of its own.
			policy=/usr/sbin/policy-rc.d
			ours=""
			if [[ ! -e "$policy" ]]; then
				printf '#!/bin/sh\nexit 101\n' >"$policy"
				chmod 755 "$policy"
				ours=1
				# Gone however this script ends (an interrupted install too).
				trap 'rm -f "$policy"' EXIT
				trap 'rm -f "$policy"; exit 130' INT TERM
			fi
			status=0
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
			if [[ -n "$ours" ]]; then rm -f "$policy"; fi
			if ((status != 0)); then exit "$status"; fi
		else
			cat >&2 <<MSG
install-deps: missing Debian packages: ${missing[*]}
install-deps: install them as root with:

    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}

install-deps: or set KUMOI_SKIP_APT=1 to skip this check (tests that need them will fail or skip).
MSG
			exit 1
		fi
	fi
fi

# --- 2. Go toolchain and modules ---------------------------------------------
if ! command -v go >/dev/null 2>&1; then
	if [[ -x /usr/local/go/bin/go ]]; then
		export PATH="/usr/local/go/bin:$PATH"
	else
		log "go not found: install Go 1.26 and put it on PATH (e.g. /usr/local/go/bin)"
		exit 1
	fi
fi

go mod download

# --- 3. staticcheck ------------------------------------------------------------
gobin="$(go env GOPATH)"
gobin="${gobin%%:*}/bin"
staticcheck="$gobin/staticcheck"
want="(${STATICCHECK_VERSION#v})"
have="$("$staticcheck" -version 2>/dev/null || true)"
if [[ "$have" != *"$want"* ]]; then
	log "installing staticcheck ${STATICCHECK_VERSION} into $gobin"
	GOBIN="$gobin" go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi
