#!/usr/bin/env bash
# build-deb.sh OUTDIR — make dist: build the kumoi binary (or take
# $KUMOI_DEB_BIN) and the Debian
# package OUTDIR/kumoi_<version>_<arch>.deb with dpkg-deb (part of dpkg on
# every Debian): the binary, the systemd units, default configuration
# files (conffiles), shell completions, the monitoring files and the docs;
# postinst makes the kumoi user, the data directories with their owners and
# the first management token's secret (deploy/debian/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-bin/dist}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

go_version="$(grep -o '"[^"]*"' <<<"$(grep -m1 '^var Version' cli/app.go)" | tr -d '"')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
version="${KUMOI_VERSION:-$go_version+$commit}"
# Debian versions sort ~ before anything: 0.1.0-dev -> 0.1.0~dev.
debversion="$(sed 's/-/~/g' <<<"$version")"
arch="$(dpkg --print-architecture)"

stage="$(mktemp -d)"
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT

install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/kumoi" \
	"$stage/usr/share/doc/kumoi" "$stage/usr/share/kumoi/prometheus" "$stage/usr/share/kumoi/grafana" \
	"$stage/usr/share/kumoi/examples" "$stage/usr/share/bash-completion/completions" \
	"$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/fish/vendor_completions.d"

if [[ -n "${KUMOI_DEB_BIN:-}" ]]; then
	# A binary built already (the tests package bin/kumoi).
	install -m 0755 "$KUMOI_DEB_BIN" "$stage/usr/bin/kumoi"
else
	go build -tags libvirt_dlopen -trimpath \
		-ldflags "-s -w -X github.com/kumoi/kumoi/cli.Version=$version" -o "$stage/usr/bin/kumoi" ./cmd/kumoi
fi
install -m 0644 deploy/systemd/*.service "$stage/lib/systemd/system/"
install -m 0644 deploy/debian/controller.hcl deploy/debian/worker.hcl "$stage/etc/kumoi/"
install -m 0644 deploy/prometheus/kumoi-alerts.yml "$stage/usr/share/kumoi/prometheus/"
install -m 0644 deploy/grafana/kumoi-dashboard.json "$stage/usr/share/kumoi/grafana/"
install -m 0644 examples/*.star "$stage/usr/share/kumoi/examples/"
install -m 0644 LICENSE "$stage/usr/share/doc/kumoi/copyright"
install -m 0644 README.md docs/*.md "$stage/usr/share/doc/kumoi/"
"$stage/usr/bin/kumoi" completion bash >"$stage/usr/share/bash-completion/completions/kumoi"
"$stage/usr/bin/kumoi" completion zsh >"$stage/usr/share/zsh/vendor-completions/_kumoi"
"$stage/usr/bin/kumoi" completion fish >"$stage/usr/share/fish/vendor_completions.d/kumoi.fish"
chmod 0644 "$stage"/usr/share/*/*completion*/* "$stage/usr/share/zsh/vendor-completions/_kumoi"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$stage/DEBIAN/"
printf '/etc/kumoi/controller.hcl\n/etc/kumoi/worker.hcl\n' >"$stage/DEBIAN/conffiles"
size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: kumoi
Version: $debversion
Architecture: $arch
Maintainer: Kumoi developers <kumoi@localhost>
Installed-Size: $size
Depends: libc6, passwd
Recommends: libvirt0, libvirt-clients
Suggests: libvirt-daemon-system, prometheus
Section: admin
Priority: optional
Homepage: https://github.com/kumoi/kumoi
Description: IaaS cloud controller: VMs on libvirt hosts, Raft-replicated
 Kumoi runs a cloud of virtual machines on hypervisor hosts. Three or five
 controllers replicate its state with Raft; a worker on each host makes its
 libvirt domains what the cluster wants. This package holds the kumoi
 binary (agent, CLI, fence guard), systemd units for the controller, the
 worker and its fence guard, default configuration for a single-node cloud,
 Prometheus alert rules and a Grafana dashboard.
CONTROL
deb="$out/kumoi_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
