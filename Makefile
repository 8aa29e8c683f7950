# Kumoi — build, run and test.
#
#   make dev     build and run a whole dev cluster in one process (simulated hosts)
#   make test    install deps, build, lint, run every test (what CI runs)
#
# Every go invocation uses -tags $(TAGS): with libvirt_dlopen the libvirt
# bindings need no libvirt headers at build time and load libvirt.so.0 only
# when a libvirt driver is actually used.

SHELL       := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

ifeq ($(origin GO),undefined)
GO      := $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
endif
GOROOT  := $(shell $(GO) env GOROOT 2>/dev/null)
GOFMT   := $(GOROOT)/bin/gofmt
GOBIN_DIR := $(firstword $(subst :, ,$(shell $(GO) env GOPATH 2>/dev/null)))/bin
STATICCHECK := $(GOBIN_DIR)/staticcheck

# Go's own bin and GOPATH/bin on PATH for every recipe and script.
export PATH := $(GOROOT)/bin:$(GOBIN_DIR):$(PATH)

TAGS     := libvirt_dlopen
BIN      := bin/kumoi
# Fault hooks (hidden agent flags that break a controller on purpose, such
# as --debug-unsafe-stale-reads) are compiled in only with this tag: $(BIN)
# has none. jepsen-selftest builds $(TESTHOOKS_BIN) with it; lint and test
# also vet and test the packages that have tagged files (TESTHOOKS_PKGS).
TESTHOOKS_TAG  := kumoi_testhooks
TESTHOOKS_BIN  := bin/kumoi-testhooks
TESTHOOKS_PKGS := ./cli/
RACE     ?= -race
TEST_TIMEOUT  ?= 15m
TESTFLAGS     ?=
# Test binaries run one at a time: several packages start real clusters
# whose gossip failure detection (sub-second probes) must not be starved of
# CPU by other packages' race-detector runs on a 2-core machine.
TESTP         ?= 1
PKGS     ?= ./...
BENCH    ?= .
BENCHTIME ?= 1x
FUZZTIME ?= 30s
FUZZPKGS ?= ./...
DEV_ARGS ?=

.PHONY: all deps build dev test bench bench-compare bench-scale bench-check dist test-dist demo demo-down test-demo lint fmt fuzz clean help

all: build

help:
	@echo "targets:"
	@echo "  deps   install Debian packages (as root), Go modules and staticcheck"
	@echo "  build  build $(BIN) (the release binary: no fault hooks)"
	@echo "  dev    run a dev cluster in one process: $(BIN) agent -dev \$$DEV_ARGS"
	@echo "  test   deps + build + lint + go test $(RACE) ./... (and $(TESTHOOKS_PKGS) with -tags $(TESTHOOKS_TAG)) + jepsen-quick"
	@echo "  jepsen-quick, jepsen   chaos runs against $(BIN) (docs/jepsen.md)"
	@echo "  jepsen-libvirtd        opt-in: 50 seeded libvirtd-backed placement runs under every host fault (docs/jepsen.md)"
	@echo "  jepsen-placement       opt-in: 50 seeded sim placement runs (quota, anti-affinity, migrations) under worker and leader faults"
	@echo "  jepsen-selftest        build $(TESTHOOKS_BIN) (-tags $(TESTHOOKS_TAG): the fault hooks) and check that"
	@echo "                         the chaos checker catches its --debug-unsafe-stale-reads bug"
	@echo "  bench  run the benchmarks in ./bench once each (BENCH, BENCHTIME)"
	@echo "  bench-check  compare two result files of make bench (OLD, NEW; default the two newest)"
	@echo "  bench-compare  etcd and Kumoi side by side, the same write load, one table (needs etcd-server)"
	@echo "  bench-scale    150,000 VMs on 5,000 hosts through a 3-controller cluster: memory, lists, snapshot, catch-up, failover"
	@echo "  demo   3 controllers and 3 workers, each in its own network namespace (root; docs/demo.md); demo-down stops it"
	@echo "  test-demo  the failure drill of docs/demo.md on that demo, checked (root; opt-in, ~20 s)"
	@echo "  dist   the Debian package bin/dist/kumoi_<version>_<arch>.deb (binary, systemd units, default config)"
	@echo "  test-dist  install that package in a throwaway Debian 12 root and run its units (root; opt-in, ~5 min)"
	@echo "  lint   gofmt, go vet and staticcheck"
	@echo "  fmt    gofmt -w every Go file"
	@echo "  fuzz   run every Fuzz* target for FUZZTIME (default 30s) each"
	@echo "  clean  remove build, test and chaos-run output"

deps:
	bash scripts/install-deps.sh

build:
	@mkdir -p $(dir $(BIN))
	$(GO) build -tags $(TAGS) -o $(BIN) ./cmd/kumoi

dev: deps build
	$(BIN) agent -dev $(DEV_ARGS)

test: deps build lint
	export KUMOI_BIN=$(abspath $(BIN)); \
	$(GO) test -tags $(TAGS) $(RACE) -p $(TESTP) -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKGS)
	$(GO) test -tags "$(TAGS) $(TESTHOOKS_TAG)" $(RACE) -count=1 -timeout $(TEST_TIMEOUT) -run 'TestAgentTestHooks' $(TESTHOOKS_PKGS)
	cd third_party/go-memdb && $(GO) test -count=1 ./...  # the patched state store (third_party/README.md)
	cd third_party/go-immutable-radix && $(GO) test -race -count=1 -skip '^TestRadix_HugeTxn$$' ./...  # its radix tree, without its 3-minute test
	cd third_party/raft && $(GO) test -race -count=1 -run '^(TestStaged|TestKumoi)' .  # the Kumoi changes to Raft (third_party/raft/KUMOI.md); upstream's suite by hand
	cd third_party/raft-wal && $(GO) test -race -count=1 ./...  # the patched Raft log store (third_party/raft-wal/KUMOI.md)
	$(MAKE) --no-print-directory jepsen-quick

# bench-compare: etcd side by side (issue 15; bench/compare_test.go): three
# etcd members (Debian's etcd-server, installed by make deps) and three
# Kumoi controllers on loopback, fsync on, the same closed-loop write load
# of 200-byte records at 1, 16 and 128 writers, spread over every member
# and to the leader only; prints one table with the Kumoi/etcd ratio of
# each row and writes it to bench/out/compare-<time>.json. About 3 min.
bench-compare: deps build
	export KUMOI_BIN=$(abspath $(BIN)) KUMOI_BENCH_COMPARE=1 KUMOI_BENCH_OUT=$(abspath bench/out); \
	$(GO) test -tags $(TAGS) -run '^$$' -bench '^BenchmarkCompare$$' -benchtime 1x -timeout 30m ./bench/

# bench-scale: issue 15's scale run through a cluster
# (bench/clusterscale_test.go): three controllers in one process take
# 5,000 hosts and 150,000 VMs through Raft; memory, API lists with
# pagination and a selector, snapshot, a new server catching up, failover
# with that state. About 3 min and 3 GiB of memory.
bench-scale: build
	KUMOI_BENCH_SCALE=1 $(GO) test -tags $(TAGS) -run '^$$' -bench '^BenchmarkScaleCluster$$' -benchtime 1x -timeout 30m ./bench/

# bench: every benchmark of ./bench once; the output is kept in
# bench/out/<UTC time>-<commit>.txt and as a result file, .json
# (cmd/kumoi-bench record), for bench-check.
bench: build
	@mkdir -p bench/out
	@export KUMOI_BIN=$(abspath $(BIN)); \
	commit=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown); \
	load=$$(cat /proc/loadavg 2>/dev/null || true); \
	txt=bench/out/$$(date -u +%Y%m%dT%H%M%SZ)-$$commit.txt; \
	echo "$(GO) test -tags $(TAGS) -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 30m ./bench/... | tee $$txt"; \
	$(GO) test -tags $(TAGS) -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 30m ./bench/... | tee $$txt; \
	$(GO) run ./cmd/kumoi-bench record --commit $$commit --out bench/out --loadavg "$$load" --go "$$($(GO) env GOVERSION)" < $$txt

# demo: a multi-host cloud on this machine (scripts/demo.sh; docs/demo.md):
# 3 controllers and 3 sim workers, each in a network namespace of its own
# on a bridge in another, for failure drills with ip and iptables. Root.
demo: deps build
	bash scripts/demo.sh up

demo-down:
	bash scripts/demo.sh down

# test-demo: the failure drill of docs/demo.md, checked, on a demo of its
# own (up, drill, down). Root; opt-in.
test-demo: build
	bash scripts/demo.sh drill

# dist: the Debian package (scripts/build-deb.sh, deploy/debian,
# deploy/systemd), built with dpkg-deb.
dist:
	bash scripts/build-deb.sh bin/dist

# test-dist: install the package of make dist into a throwaway Debian 12
# root (debootstrap, installed when missing) and run its units there as
# systemd would, in a network namespace of their own: a single-node cloud
# takes a VM (deploy/install_test.go; docs/operations.md). Needs root.
test-dist: build
	@if [ "$$(id -u)" -ne 0 ]; then echo "test-dist: needs root (debootstrap, chroot, a network namespace)" >&2; exit 1; fi
	command -v debootstrap >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap)
	KUMOI_BIN=$(abspath $(BIN)) KUMOI_TEST_DIST=1 $(GO) test -tags $(TAGS) -count=1 -v -timeout 30m -run '^TestPackageInstall$$' ./deploy/

# bench-check: compare two result files of make bench (OLD and NEW; by
# default the two newest in bench/out) and fail if a figure got worse by
# more than its noise (bench/noise.json, measured as docs/benchmarks.md says).
BENCH_FILES = $(shell ls -1 bench/out/2*.json 2>/dev/null | sort | tail -2)
OLD ?= $(word 1,$(BENCH_FILES))
NEW ?= $(word 2,$(BENCH_FILES))
bench-check:
	@if [ -z "$(OLD)" ] || [ -z "$(NEW)" ]; then echo "bench-check: needs two result files: make bench twice, or OLD=… NEW=…" >&2; exit 2; fi
	$(GO) run ./cmd/kumoi-bench check --noise bench/noise.json $(OLD) $(NEW)

# Go files that gofmt checks: everything tracked or not, except testdata,
# chaos-run output and the build directory.
GOFILES_CMD := find . -name '*.go' -type f \
	-not -path './.git/*' -not -path './bin/*' -not -path './jepsen/out/*' \
	-not -path '*/testdata/*' -print0

lint:
	@echo ">> gofmt -l"
	@unformatted="$$($(GOFILES_CMD) | xargs -0 -r $(GOFMT) -l)"; \
	if [ -n "$$unformatted" ]; then \
		echo "these files are not gofmt-formatted (run 'make fmt'):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	@echo ">> go vet"
	$(GO) vet -tags $(TAGS) ./...
	$(GO) vet -tags "$(TAGS) $(TESTHOOKS_TAG)" $(TESTHOOKS_PKGS)
	@echo ">> staticcheck"
	@if [ ! -x "$(STATICCHECK)" ]; then \
		echo "staticcheck not found at $(STATICCHECK): run 'make deps'"; exit 1; \
	fi
	$(STATICCHECK) -tags $(TAGS) ./...
	$(STATICCHECK) -tags "$(TAGS) $(TESTHOOKS_TAG)" $(TESTHOOKS_PKGS)

fmt:
	$(GOFILES_CMD) | xargs -0 -r $(GOFMT) -w

# go test allows one -fuzz target per package per run, so list every Fuzz*
# function per package and run them one after another.
fuzz:
	@list="$$($(GO) test -tags $(TAGS) -list '^Fuzz' $(FUZZPKGS))"; \
	targets="$$(echo "$$list" | awk '/^Fuzz/ { f[n++] = $$1; next } /^ok/ { for (i = 0; i < n; i++) print $$2 " " f[i]; n = 0 }')"; \
	if [ -z "$$targets" ]; then echo "fuzz: no Fuzz* targets found"; exit 0; fi; \
	failed=""; \
	while read -r pkg fn; do \
		echo ">> $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg" </dev/null || failed="$$failed $$pkg:$$fn"; \
	done <<< "$$targets"; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

clean:
	rm -rf bin/ jepsen/out/ bench/out/
	rm -f coverage.out coverage.html cover.out *.coverprofile cpu.prof mem.prof

# Opt-in, not part of `make test`: the libvirt driver on a real
# qemu:///system (QEMU under TCG), booting a kernel and an initramfs the test
# builds from Debian packages; then the real binary on real QEMU
# (test/qemu): changes behind Kumoi's back (virsh destroy, kill -9 of QEMU)
# and a worker killed while its guest runs, with a second worker on a second
# privileged libvirtd (private mount namespace), both daemons watched for a
# double run. Needs root: it installs QEMU and libvirtd and starts the
# daemon (scripts/install-qemu-deps.sh). One package at a time (-p 1): TCG
# guests are CPU-bound.
.PHONY: test-qemu
test-qemu: build
	bash scripts/install-qemu-deps.sh
	KUMOI_TEST_QEMU=1 KUMOI_BIN=$(abspath $(BIN)) \
	KUMOI_TEST_QEMU_RESTART_LIBVIRTD="bash $(abspath scripts/install-qemu-deps.sh) --restart-libvirtd" \
	$(GO) test -tags $(TAGS) -p 1 -count=1 -timeout 30m -v -run 'QEMU' ./hypervisor/libvirt/ ./test/qemu/

# The chaos harness (docs/jepsen.md). Partition nemeses need root: as
# another user they are left out (kumoi-jepsen refuses them loudly).
# JEPSEN_SEED=0 picks a seed from the time (printed in the summary).
#   jepsen-quick     register, set and ipam, 3 controllers, a mix of nemeses
#                    (Raft log segments of JEPSEN_WAL_SEGMENT), then
#                    placement with 2 sim workers under worker and leader
#                    faults, JEPSEN_DURATION each (run by `make test`)
#   jepsen           3 and 5 controllers with 2 sim workers, every nemesis
#                    (wipe-restart included), JEPSEN_LONG each, register,
#                    set and ipam; then placement on 3 and 5 controllers;
#                    register, set and ipam under wipe-restart alone; the bootstrap-race
#                    workload (racy start-ups) on 3 and 5 controllers.
#                    Every run checks the cluster identity (bootstrap-race)
#                    at the start, after heals that restart controllers and
#                    at the end; jepsen-quick too (its mix has no
#                    wipe-restart: each one lasts 6-10 s)
#                    jepsen-quick ends with one short libvirtd-backed
#                    placement run (--worker-driver libvirtd: one libvirt
#                    daemon per worker host, the checker reads the daemons)
#                    under JEPSEN_LIBVIRTD_QUICK_NEMESIS
#   jepsen-libvirtd  opt-in campaign: JEPSEN_LIBVIRTD_RUNS (50) seeded
#                    libvirtd-backed placement runs under every host fault,
#                    then JEPSEN_LIBVIRTD_SIM_RUNS on sim workers; bounded by
#                    JEPSEN_LIBVIRTD_MAX_TIME each (kumoi-jepsen --max-time)
#   jepsen-placement opt-in campaign: JEPSEN_PLACEMENT_RUNS (50) seeded
#                    placement runs on 2 sim workers (quota, hard anti-affine
#                    groups, live migrations) under worker and leader
#                    faults, JEPSEN_PLACEMENT_DURATION each, bounded by
#                    JEPSEN_PLACEMENT_MAX_TIME; the output goes to
#                    JEPSEN_PLACEMENT_LOG and is summarised at the end
#   jepsen-selftest  builds $(TESTHOOKS_BIN) with -tags $(TESTHOOKS_TAG) (the
#                    release $(BIN) has no fault hooks and kumoi-jepsen
#                    refuses it), then register with the hidden
#                    --debug-unsafe-stale-reads under partitions and pauses,
#                    10 seeds: the checker must catch the stale reads in at
#                    least 9 runs
comma              := ,
JEPSEN_DURATION    ?= 30s
JEPSEN_LONG        ?= 60s
JEPSEN_SEED        ?= 0
JEPSEN_ARGS        ?=
# The first register, set and ipam runs of jepsen-quick and jepsen: the
# controllers' Raft log rotates its segments every few thousand entries
# under the faults (the default, 64MiB, never does in a run).
JEPSEN_WAL_SEGMENT ?= 1MiB
JEPSEN_ROOT        := $(filter 0,$(shell id -u))
JEPSEN_NEMESIS_ALL := kill-leader,kill-random,pause-leader,pause-random,transfer-leader,partition-leader,partition-majority,partition-oneway
JEPSEN_NEMESIS_NOROOT := kill-leader,kill-random,pause-leader,pause-random,transfer-leader
JEPSEN_NEMESIS     ?= $(if $(JEPSEN_ROOT),$(JEPSEN_NEMESIS_ALL),$(JEPSEN_NEMESIS_NOROOT))
JEPSEN_FULL_3      := $(if $(JEPSEN_ROOT),$(JEPSEN_NEMESIS_ALL),$(JEPSEN_NEMESIS_NOROOT)),kill-majority,member-change,wipe-restart,worker-kill$(if $(JEPSEN_ROOT),$(comma)worker-partition)
JEPSEN_FULL_5      := $(JEPSEN_FULL_3)$(if $(JEPSEN_ROOT),$(comma)partition-ring$(comma)partition-bridge)
JEPSEN_PLACEMENT_NEMESIS ?= worker-kill,kill-leader$(if $(JEPSEN_ROOT),$(comma)worker-partition$(comma)partition-leader)
# The libvirtd-backed placement run of jepsen-quick: the faults whose
# domains outlive the worker (before the fence guard, worker-kill,
# worker-pause and worker-restart-partitioned made a VM run twice here), a
# hung libvirtd and a leader kill.
JEPSEN_LIBVIRTD_QUICK_NEMESIS ?= worker-kill,worker-pause$(if $(JEPSEN_ROOT),$(comma)worker-restart-partitioned),libvirt-hang,kill-leader
JEPSEN_LIBVIRTD_QUICK_DURATION ?= 20s
JEPSEN_LIBVIRTD_HOST_FAULTS := worker-kill,worker-pause$(if $(JEPSEN_ROOT),$(comma)worker-restart-partitioned)
JEPSEN_LIBVIRTD_NEMESIS ?= $(JEPSEN_LIBVIRTD_HOST_FAULTS),libvirt-hang,kill-leader$(if $(JEPSEN_ROOT),$(comma)partition-leader)
# On sim workers the domains live in the worker process: worker-pause
# freezes and thaws the whole "host", which only external fencing covers
# (docs/jepsen.md), so the sim batch leaves it out.
JEPSEN_LIBVIRTD_SIM_NEMESIS ?= worker-kill$(if $(JEPSEN_ROOT),$(comma)worker-restart-partitioned),kill-leader$(if $(JEPSEN_ROOT),$(comma)partition-leader)
JEPSEN_LIBVIRTD_RUNS ?= 50
JEPSEN_LIBVIRTD_SIM_RUNS ?= 10
JEPSEN_LIBVIRTD_DURATION ?= 20s
JEPSEN_LIBVIRTD_SEED ?= 1000
JEPSEN_LIBVIRTD_MAX_TIME ?= 60m
# The placement campaign (sim workers): worker-pause is left out for the
# reason given above (a paused sim worker freezes its domains with it).
JEPSEN_PLACEMENT_CAMPAIGN_NEMESIS ?= worker-kill,kill-leader$(if $(JEPSEN_ROOT),$(comma)worker-partition$(comma)partition-leader)
JEPSEN_PLACEMENT_RUNS ?= 50
JEPSEN_PLACEMENT_DURATION ?= 30s
JEPSEN_PLACEMENT_SEED ?= 1400
JEPSEN_PLACEMENT_MAX_TIME ?= 60m
JEPSEN_PLACEMENT_LOG ?= jepsen/out/placement-campaign.log
JEPSEN_SELFTEST_NEMESIS := $(if $(JEPSEN_ROOT),partition-leader$(comma)pause-leader,pause-leader)
JEPSEN_HARNESS = $(GO) run -tags $(TAGS) ./cmd/kumoi-jepsen
JEPSEN_RUN = $(JEPSEN_HARNESS) --bin $(BIN)
.PHONY: jepsen-quick jepsen jepsen-selftest jepsen-libvirtd jepsen-placement
jepsen-quick: build
	$(JEPSEN_RUN) --workload register,set,ipam --nodes 3 --raft-wal-segment-size $(JEPSEN_WAL_SEGMENT) \
		--nemesis $(JEPSEN_NEMESIS) --duration $(JEPSEN_DURATION) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload placement --nodes 3 --workers 2 \
		--nemesis $(JEPSEN_PLACEMENT_NEMESIS) --duration $(JEPSEN_DURATION) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload placement --nodes 3 --workers 2 --worker-driver libvirtd \
		--nemesis $(JEPSEN_LIBVIRTD_QUICK_NEMESIS) --duration $(JEPSEN_LIBVIRTD_QUICK_DURATION) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)

# Both batches run even if the first has invalid runs; the target fails
# if either does.
jepsen-libvirtd: build
	@rc=0; \
	$(JEPSEN_RUN) --workload placement --nodes 3 --workers 2 --worker-driver libvirtd \
		--nemesis $(JEPSEN_LIBVIRTD_NEMESIS) --duration $(JEPSEN_LIBVIRTD_DURATION) \
		--runs $(JEPSEN_LIBVIRTD_RUNS) --seed $(JEPSEN_LIBVIRTD_SEED) --max-time $(JEPSEN_LIBVIRTD_MAX_TIME) $(JEPSEN_ARGS) || rc=1; \
	$(JEPSEN_RUN) --workload placement --nodes 3 --workers 2 --worker-driver sim \
		--nemesis $(JEPSEN_LIBVIRTD_SIM_NEMESIS) --duration $(JEPSEN_LIBVIRTD_DURATION) \
		--runs $(JEPSEN_LIBVIRTD_SIM_RUNS) --seed $(JEPSEN_LIBVIRTD_SEED) --max-time $(JEPSEN_LIBVIRTD_MAX_TIME) $(JEPSEN_ARGS) || rc=1; \
	exit $$rc

# The runs' output is kept in JEPSEN_PLACEMENT_LOG; the summary is
# printed even if some runs are invalid (the target then fails).
jepsen-placement: build
	@mkdir -p $(dir $(JEPSEN_PLACEMENT_LOG))
	@rc=0; \
	$(JEPSEN_RUN) --workload placement --nodes 3 --workers 2 --worker-driver sim \
		--nemesis $(JEPSEN_PLACEMENT_CAMPAIGN_NEMESIS) --duration $(JEPSEN_PLACEMENT_DURATION) \
		--runs $(JEPSEN_PLACEMENT_RUNS) --seed $(JEPSEN_PLACEMENT_SEED) --max-time $(JEPSEN_PLACEMENT_MAX_TIME) $(JEPSEN_ARGS) \
		2>&1 | tee $(JEPSEN_PLACEMENT_LOG) || rc=$$?; \
	awk -f jepsen/placement-campaign.awk $(JEPSEN_PLACEMENT_LOG); \
	exit $$rc

jepsen: build
	$(JEPSEN_RUN) --workload register,set,ipam --nodes 3 --workers 2 --raft-wal-segment-size $(JEPSEN_WAL_SEGMENT) \
		--nemesis $(JEPSEN_FULL_3) --duration $(JEPSEN_LONG) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload register,set,ipam --nodes 5 --workers 2 \
		--nemesis $(JEPSEN_FULL_5) --duration $(JEPSEN_LONG) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload placement --nodes 3 --workers 2 \
		--nemesis $(JEPSEN_PLACEMENT_NEMESIS) --duration $(JEPSEN_LONG) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload placement --nodes 5 --workers 2 \
		--nemesis $(JEPSEN_PLACEMENT_NEMESIS) --duration $(JEPSEN_LONG) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload register,set,ipam --nodes 3 \
		--nemesis wipe-restart --duration $(JEPSEN_LONG) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload register,set,ipam --nodes 3 --workers 2 --stream \
		--nemesis $(JEPSEN_FULL_3) --duration $(JEPSEN_LONG) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload register,set,ipam --nodes 3 --workers 2 --raft-log-store boltdb \
		--nemesis $(JEPSEN_FULL_3) --duration $(JEPSEN_LONG) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload bootstrap-race --nodes 3 --duration $(JEPSEN_LONG) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
	$(JEPSEN_RUN) --workload bootstrap-race --nodes 5 --duration $(JEPSEN_LONG) --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)

jepsen-selftest:
	@mkdir -p $(dir $(TESTHOOKS_BIN))
	$(GO) build -tags "$(TAGS) $(TESTHOOKS_TAG)" -o $(TESTHOOKS_BIN) ./cmd/kumoi
	$(JEPSEN_HARNESS) --bin $(TESTHOOKS_BIN) --unsafe-stale-reads --workload register --nodes 3 \
		--nemesis $(JEPSEN_SELFTEST_NEMESIS) --duration 15s --runs 10 --want-caught 9 --seed $(JEPSEN_SEED) $(JEPSEN_ARGS)
