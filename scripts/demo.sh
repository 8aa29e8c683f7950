#!/usr/bin/env bash
# demo.sh — a multi-host Kumoi cloud on one machine (make demo; docs/demo.md).
#
# Three controllers and three workers, each in a Linux network namespace of
# its own with a real address on a bridge (10.77.0.0/24), so that host
# failures, partitions and HA can be shown with ip and iptables. Nothing is
# added to the machine's own network: the bridge lives in a namespace of its
# own too, nothing is routed or forwarded out. Needs root.
#
#   demo.sh up                 start it (prints what to try next)
#   demo.sh status             who runs, the cluster as the CLI sees it
#   demo.sh kumoi ARGS...      the CLI, from a client namespace, with the token
#   demo.sh kill NODE          SIGKILL the agent of c1..c3 or w1..w3
#   demo.sh start NODE         start it again
#   demo.sh partition NODE     cut NODE off the bridge (iptables DROP in its namespace)
#   demo.sh heal NODE          undo partition
#   demo.sh drill              the failure drill of docs/demo.md, checked (make test-demo)
#   demo.sh down               stop everything, remove the namespaces and the state
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
KUMOI="${KUMOI_BIN:-$PWD/bin/kumoi}"
STATE="${KUMOI_DEMO_DIR:-/run/kumoi-demo}"
NET=10.77.0
BR=kd-br
CONTROLLERS=(c1 c2 c3)
WORKERS=(w1 w2 w3)
SECRET_FILE="$STATE/token"

die() { echo "demo: $*" >&2; exit 1; }
log() { echo "demo: $*" >&2; }

[[ "$(id -u)" -eq 0 ]] || die "needs root: it makes network namespaces, veth pairs, a bridge and iptables rules (run: sudo make demo)"
[[ -x "$KUMOI" ]] || die "no kumoi binary at $KUMOI: run make build (or set KUMOI_BIN)"

addr() {
	case "$1" in
	cli) echo "$NET.2" ;;
	c1) echo "$NET.11" ;; c2) echo "$NET.12" ;; c3) echo "$NET.13" ;;
	w1) echo "$NET.21" ;; w2) echo "$NET.22" ;; w3) echo "$NET.23" ;;
	*) die "unknown node $1: use c1, c2, c3, w1, w2 or w3" ;;
	esac
}
ns() { echo "kd-$1"; }
token() { cat "$SECRET_FILE"; }
urls() { echo "http://$(addr c1):7400,http://$(addr c2):7400,http://$(addr c3):7400"; }

netns_up() {
	local node=$1 a
	a=$(addr "$node")
	ip netns add "$(ns "$node")"
	# Made inside the bridge's namespace: nothing appears in the host's.
	ip -n "$BR" link add "v-$node" type veth peer name eth0 netns "$(ns "$node")"
	ip -n "$BR" link set "v-$node" master br0 up
	ip -n "$(ns "$node")" addr add "$a/24" dev eth0
	ip -n "$(ns "$node")" link set eth0 up
	ip -n "$(ns "$node")" link set lo up
}

start_node() {
	local node=$1 a args
	a=$(addr "$node")
	mkdir -p "$STATE/$node" "$STATE/logs"
	local join=()
	for c in "${CONTROLLERS[@]}"; do [[ "$c" != "$node" ]] && join+=(--join "$(addr "$c"):7402"); done
	if [[ "$node" == c* ]]; then
		args=(agent --controller --node-id "$node" --bind "$a" --bootstrap-expect 3 "${join[@]}"
			--data-dir "$STATE/$node")
	else
		args=(agent --worker --node-id "hv-${node#w}" --bind "$a" "${join[@]}"
			--data-dir "$STATE/$node" --hypervisor sim --cpus 8 --memory 16GiB
			--storage-dir "$STATE/$node/storage" --image-dir "$STATE/$node/images")
		mkdir -p "$STATE/$node/images"
	fi
	KUMOI_ACL_INITIAL_MANAGEMENT="$(token)" KUMOI_TOKEN="$(token)" \
		setsid ip netns exec "$(ns "$node")" "$KUMOI" "${args[@]}" >>"$STATE/logs/$node.log" 2>&1 </dev/null &
	echo $! >"$STATE/$node.pid"
	disown
}

alive() { [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

kill_node() {
	local node=$1
	alive "$node" || { log "$node is not running"; return 0; }
	kill -KILL "$(cat "$STATE/$node.pid")"
	rm -f "$STATE/$node.pid"
}

cli() {
	ip netns exec "$(ns cli)" env KUMOI_ADDR="$(urls)" KUMOI_TOKEN="$(token)" "$KUMOI" "$@"
}

# wait_for SECONDS WHAT COMMAND...: run COMMAND until it succeeds.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
		sleep 0.2
	done
}

up() {
	ip netns list | grep -q "^$BR\b" && die "the demo is up already (demo.sh down first)"
	# Root's own directory: refused if someone else made it (or a link).
	if [[ -L "$STATE" || (-e "$STATE" && "$(stat -c %u "$STATE")" != 0) ]]; then
		die "$STATE exists and is not root's own directory: remove it, or set KUMOI_DEMO_DIR"
	fi
	install -d -m 0700 "$STATE"
	(umask 077; [[ -f "$SECRET_FILE" ]] || cat /proc/sys/kernel/random/uuid >"$SECRET_FILE")
	ip netns add "$BR"
	ip -n "$BR" link add br0 type bridge
	ip -n "$BR" link set br0 up
	for n in cli "${CONTROLLERS[@]}" "${WORKERS[@]}"; do netns_up "$n"; done
	for n in "${CONTROLLERS[@]}" "${WORKERS[@]}"; do start_node "$n"; done
	wait_for 60 "a leader" cli cluster status
	for w in 1 2 3; do wait_for 60 "host hv-$w" hostready "hv-$w"; done
	cat <<MSG
demo: up — 3 controllers (c1-c3 at $NET.11-13) and 3 workers (hosts hv-1..hv-3 at $NET.21-23),
demo: each in its own network namespace on a bridge; state and logs in $STATE.
demo: try (docs/demo.md walks through a failure drill):
   sudo scripts/demo.sh kumoi cluster status
   sudo scripts/demo.sh kumoi vm create web-1 --cpus 1 --memory 1GiB --ha restart --wait
   sudo scripts/demo.sh kill w1          # a host dies: its ha=restart VMs come back elsewhere
   sudo scripts/demo.sh partition c1     # a controller cut off; heal with: demo.sh heal c1
   sudo scripts/demo.sh down
MSG
}

hostready() { hoststate "$1" ready; }
hoststate() { [[ "$(cli host get "$1" -t '{{.status.state}}')" == "$2" ]]; }

down() {
	for n in "${CONTROLLERS[@]}" "${WORKERS[@]}"; do
		if alive "$n"; then kill -TERM "$(cat "$STATE/$n.pid")" 2>/dev/null || true; fi
	done
	sleep 1
	for n in "${CONTROLLERS[@]}" "${WORKERS[@]}"; do
		if alive "$n"; then kill -KILL "$(cat "$STATE/$n.pid")" 2>/dev/null || true; fi
		rm -f "$STATE/$n.pid"
	done
	for n in cli "${CONTROLLERS[@]}" "${WORKERS[@]}" br; do
		ip netns del "kd-$n" 2>/dev/null || true
	done
	rm -rf "$STATE"
	log "down: namespaces and $STATE removed"
}

partition() {
	local n
	n=$(ns "$1")
	ip netns exec "$n" iptables -I INPUT -i eth0 -j DROP
	ip netns exec "$n" iptables -I OUTPUT -o eth0 -j DROP
	log "$1 is cut off (heal with: demo.sh heal $1)"
}

heal() {
	local n
	n=$(ns "$1")
	ip netns exec "$n" iptables -D INPUT -i eth0 -j DROP 2>/dev/null || true
	ip netns exec "$n" iptables -D OUTPUT -o eth0 -j DROP 2>/dev/null || true
	log "$1 is back on the bridge"
}

status() {
	for n in "${CONTROLLERS[@]}" "${WORKERS[@]}"; do
		if alive "$n"; then echo "$n $(addr "$n") running (pid $(cat "$STATE/$n.pid"))"; else echo "$n $(addr "$n") stopped"; fi
	done
	cli cluster status || true
}

leader() { cli cluster status -o json | sed -n 's/.*"leader": *"\([^"]*\)".*/\1/p' | head -1; }

# leader_without NODE: the leader as the controllers other than NODE see
# it (a CLI that leaves NODE out of its addresses does not wait on it).
leader_without() {
	local a=()
	for c in "${CONTROLLERS[@]}"; do [[ "$c" != "$1" ]] && a+=("http://$(addr "$c"):7400"); done
	ip netns exec "$(ns cli)" env KUMOI_ADDR="$(IFS=,; echo "${a[*]}")" KUMOI_TOKEN="$(token)" "$KUMOI" cluster status -o json |
		sed -n 's/.*"leader": *"\([^"]*\)".*/\1/p' | head -1
}

vm_phase_host() { cli vm get "$1" -t '{{.status.phase}} {{.status.host}}'; }

# drill: the failure drill of docs/demo.md, with checks; exits non-zero on
# the first that fails.
drill() {
	local t0
	trap down EXIT
	up
	log "drill: three ha=restart VMs"
	for i in 1 2 3; do cli vm create "web-$i" --cpus 1 --memory 1GiB --ha restart --wait >/dev/null; done
	cli vm list
	local victim host
	victim=$(vm_phase_host web-1 | cut -d' ' -f2)
	[[ "$victim" == hv-* ]] || die "web-1 is not placed: $(vm_phase_host web-1)"
	log "drill: kill -9 the worker of $victim (its host dies)"
	t0=$SECONDS
	kill_node "w${victim#hv-}"
	wait_for 30 "$victim down" hoststate "$victim" down
	log "drill: $victim is down after $((SECONDS - t0))s"
	wait_for 60 "web-1 running elsewhere" running_elsewhere web-1 "$victim"
	log "drill: web-1 runs on $(vm_phase_host web-1 | cut -d' ' -f2) after $((SECONDS - t0))s"
	cli vm list
	start_node "w${victim#hv-}"
	wait_for 60 "$victim ready again" hostready "$victim"
	log "drill: $victim is back"

	local old new
	old=$(leader)
	[[ -n "$old" ]] || die "no leader"
	log "drill: partition the leader $old"
	partition "$old"
	t0=$SECONDS
	wait_for 30 "a new leader" new_leader "$old"
	log "drill: new leader $(leader_without "$old") after $((SECONDS - t0))s"
	cli vm create web-4 --cpus 1 --memory 1GiB --wait >/dev/null
	log "drill: a write during the partition: web-4 $(vm_phase_host web-4)"
	heal "$old"
	wait_for 60 "$old to catch up" caught_up "$old"
	log "drill: $old is back and caught up"
	cli cluster status
	log "drill: passed"
}

running_elsewhere() {
	local ph host
	read -r ph host < <(vm_phase_host "$1")
	[[ "$ph" == running && "$host" != "$2" ]]
}

new_leader() {
	local l
	l=$(leader_without "$1")
	[[ -n "$l" && "$l" != "$1" ]]
}

caught_up() {
	cli cluster status -o json | grep -q "\"id\": \"$1\"" &&
		! cli cluster status | grep -E "^$1 " | grep -qE 'unreachable|catching-up'
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
kumoi) shift; cli "$@" ;;
kill) kill_node "${2:?node}" ;;
start) start_node "${2:?node}" ;;
partition) partition "${2:?node}" ;;
heal) heal "${2:?node}" ;;
drill) drill ;;
*) sed -n '2,20p' "$0"; exit 2 ;;
esac
