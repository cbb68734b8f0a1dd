#!/bin/sh
# A multi-host skiff cluster on one machine, made of network namespaces: the
# topology of the e2e multi-node harness (internal/e2e/netcluster_harness_test.go),
# by hand, for trying things out.
#
#   switch    netns skiffdev-sw        bridge br0, one veth port per host
#   server    netns skiffdev-server    198.51.100.10/24       skiff server (+ its agent: a node)
#   agent-N   netns skiffdev-agent-N   198.51.100.(10+N)/24   skiff agent
#   client    netns skiffdev-client    198.51.100.100/24      nothing: a machine outside the cluster
#
# Every host has lo up, eth0 with its address and a default route via
# 198.51.100.1, an address nobody holds (Service VIPs are routable, nothing
# outside the namespaces is reachable). Nothing is created in this
# machine's own network namespace. skiff runs under `nsenter --net=` (not
# `ip netns exec`, whose private mount namespace would hide the agents'
# sandbox mounts from the rest of the machine), with its own data dir and
# cgroup root per host; the busybox test image
# (docker.io/library/busybox:stable-skiff, from busybox-static) is in each
# node's air-gap image directory when busybox is installed.
#
# Usage (as root; needs iproute2 and nsenter from util-linux):
#   scripts/netns-cluster.sh up [N]   create the hosts, start the server and N agents
#                                     (default 2), wait until every node is Ready
#   scripts/netns-cluster.sh down     stop everything, `skiff killall` on every host,
#                                     remove the namespaces and the state directory
#   scripts/netns-cluster.sh status   the namespaces and the skiff processes
# Environment: SKIFF (the binary, default bin/skiff), STATE_DIR (data dirs,
# logs, kubeconfig; default /tmp/skiff-netns-cluster), SERVER_ARGS and
# AGENT_ARGS (more flags, split on spaces, e.g. SERVER_ARGS=--pod-network=host-gw).
set -eu

SKIFF=${SKIFF:-bin/skiff}
STATE_DIR=${STATE_DIR:-/tmp/skiff-netns-cluster}
SERVER_ARGS=${SERVER_ARGS:-}
AGENT_ARGS=${AGENT_ARGS:-}
P=skiffdev
NET=198.51.100
SERVER_IP=$NET.10
CLIENT_IP=$NET.100
GATEWAY=$NET.1
DIR=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)

die() {
	echo "netns-cluster: $*" >&2
	exit 1
}

ns_exists() { [ -e "/run/netns/$1" ]; }

# host NAME IP PORT: a namespace wired to the switch.
host() {
	ip netns add "$P-$1"
	ip -n "$P-sw" link add "$3" type veth peer name eth0 netns "$P-$1"
	ip -n "$P-sw" link set "$3" master br0 up
	ip -n "$P-$1" link set lo up
	ip -n "$P-$1" addr add "$2/24" dev eth0
	ip -n "$P-$1" link set eth0 up
	ip -n "$P-$1" route add default via "$GATEWAY" dev eth0
}

# start NAME ARGS…: skiff in the host's namespace, in the background.
start() {
	name=$1
	shift
	mkdir -p "$STATE_DIR/$name/data/agent/images"
	if [ -s "$STATE_DIR/busybox.tar" ]; then
		ln -f "$STATE_DIR/busybox.tar" "$STATE_DIR/$name/data/agent/images/busybox.tar"
	fi
	# nsenter execs skiff: $! is skiff's pid.
	nsenter --net="/run/netns/$P-$name" -- "$SKIFF" "$@" </dev/null >"$STATE_DIR/$name/log" 2>&1 &
	echo $! >"$STATE_DIR/$name/pid"
}

kubectl_cmd() {
	if command -v kubectl >/dev/null 2>&1; then
		echo kubectl
	else
		echo "$SKIFF kubectl"
	fi
}

up() {
	n=${1:-2}
	case $n in '' | *[!0-9]*) die "agent count must be a number: $n" ;; esac
	[ "$(id -u)" = 0 ] || die "needs root"
	[ -x "$SKIFF" ] || die "no skiff binary at $SKIFF (make build, or set SKIFF)"
	ns_exists "$P-sw" && die "already up (scripts/netns-cluster.sh down first)"
	SKIFF=$(CDPATH= cd -- "$(dirname -- "$SKIFF")" && pwd)/$(basename -- "$SKIFF")
	mkdir -p "$STATE_DIR"
	echo "$n" >"$STATE_DIR/agents"
	if command -v busybox >/dev/null 2>&1; then
		"$DIR/scripts/busybox-image.sh" "$STATE_DIR/busybox.tar" docker.io/library/busybox:stable-skiff >/dev/null
	fi

	ip netns add "$P-sw"
	ip -n "$P-sw" link set lo up
	ip -n "$P-sw" link add br0 type bridge
	ip -n "$P-sw" link set br0 up
	host server "$SERVER_IP" p0
	i=1
	while [ "$i" -le "$n" ]; do
		host "agent-$i" "$NET.$((10 + i))" "p$i"
		i=$((i + 1))
	done
	host client "$CLIENT_IP" pc

	# shellcheck disable=SC2086 # SERVER_ARGS is split on purpose
	start server server --data-dir "$STATE_DIR/server/data" --write-kubeconfig "$STATE_DIR/server/kubeconfig.yaml" \
		--node-ip "$SERVER_IP" --node-name server --cgroup-root "$P-server" $SERVER_ARGS
	i=0
	until [ -s "$STATE_DIR/server/data/server/token" ] && [ -s "$STATE_DIR/server/kubeconfig.yaml" ]; do
		i=$((i + 1))
		if [ $i -gt 600 ] || ! kill -0 "$(cat "$STATE_DIR/server/pid")" 2>/dev/null; then
			tail -20 "$STATE_DIR/server/log" >&2
			die "skiff server did not start (log: $STATE_DIR/server/log)"
		fi
		sleep 0.1
	done
	# The same kubeconfig, naming the server's address on the switch.
	sed "s#server: https://127.0.0.1:#server: https://$SERVER_IP:#" "$STATE_DIR/server/kubeconfig.yaml" >"$STATE_DIR/kubeconfig.yaml"
	chmod 600 "$STATE_DIR/kubeconfig.yaml"
	token=$(cat "$STATE_DIR/server/data/server/token")
	i=1
	while [ "$i" -le "$n" ]; do
		# shellcheck disable=SC2086 # AGENT_ARGS is split on purpose
		start "agent-$i" agent --server "https://$SERVER_IP:6443" --token "$token" \
			--data-dir "$STATE_DIR/agent-$i/data" --node-name "agent-$i" --node-ip "$NET.$((10 + i))" \
			--cgroup-root "$P-agent-$i" $AGENT_ARGS
		i=$((i + 1))
	done

	kc=$(kubectl_cmd)
	want=$((n + 1))
	case " $SERVER_ARGS " in *" --disable-agent "*) want=$n ;; esac
	i=0
	while :; do
		ready=$(KUBECONFIG=$STATE_DIR/kubeconfig.yaml nsenter --net="/run/netns/$P-server" -- $kc get nodes --no-headers 2>/dev/null | grep -c ' Ready' || true)
		[ "$ready" -ge "$want" ] && break
		i=$((i + 1))
		[ $i -gt 1200 ] && die "only $ready of $want nodes Ready after 120s (logs: $STATE_DIR/*/log)"
		sleep 0.1
	done
	cat <<MSG
skiff cluster up: server $SERVER_IP, agents $NET.11-$NET.$((10 + n)), client $CLIENT_IP.
kubectl (from the server host):
  nsenter --net=/run/netns/$P-server -- $kc --kubeconfig $STATE_DIR/kubeconfig.yaml get nodes -o wide
from the client host (outside the cluster), e.g. a NodePort:
  ip netns exec $P-client busybox wget -qO- http://$NET.11:31000/
a shell on a host:   nsenter --net=/run/netns/$P-agent-1 sh
logs:                $STATE_DIR/<host>/log
test image:          docker.io/library/busybox:stable-skiff
tear down:           $0 down
MSG
}

down() {
	[ "$(id -u)" = 0 ] || die "needs root"
	hosts=""
	if [ -d "$STATE_DIR" ]; then
		for d in "$STATE_DIR"/*/; do
			[ -d "$d" ] && hosts="$hosts $(basename "$d")"
		done
	fi
	# Agents first, then the server; SIGTERM, then SIGKILL after 30s.
	for h in $hosts; do
		[ "$h" = server ] && continue
		stop_host "$h"
	done
	stop_host server
	for h in $hosts; do
		[ -d "$STATE_DIR/$h/data" ] || continue
		ns=/run/netns/$P-$h
		if ! ns_exists "$P-$h"; then
			# Never clean up in this machine's own namespace.
			ip netns add "$P-scratch" 2>/dev/null || true
			ns=/run/netns/$P-scratch
		fi
		nsenter --net="$ns" -- "$SKIFF" killall --data-dir "$STATE_DIR/$h/data" --cgroup-root "$P-$h" ||
			echo "netns-cluster: skiff killall on $h failed" >&2
	done
	for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		if [ -n "$pids" ]; then
			echo "netns-cluster: killing what still runs in $ns: $pids" >&2
			# shellcheck disable=SC2086
			kill -KILL $pids 2>/dev/null || true
		fi
		ip netns del "$ns"
	done
	rm -rf "$STATE_DIR"
	echo "skiff cluster down"
}

stop_host() {
	pidf=$STATE_DIR/$1/pid
	[ -s "$pidf" ] || return 0
	pid=$(cat "$pidf")
	kill -TERM "$pid" 2>/dev/null || {
		rm -f "$pidf"
		return 0
	}
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 300 ]; then
			echo "netns-cluster: $1 did not stop in 30s; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		sleep 0.1
	done
	rm -f "$pidf"
}

status() {
	ip netns list | grep "^$P-" || echo "no $P-* namespaces"
	if [ -d "$STATE_DIR" ]; then
		for pidf in "$STATE_DIR"/*/pid; do
			[ -s "$pidf" ] || continue
			h=$(basename "$(dirname "$pidf")")
			if kill -0 "$(cat "$pidf")" 2>/dev/null; then
				echo "$h: running (pid $(cat "$pidf"))"
			else
				echo "$h: not running"
			fi
		done
	fi
}

case ${1:-} in
up)
	shift
	up "$@"
	;;
down) down ;;
status) status ;;
*)
	echo "usage: $0 up [N] | down | status" >&2
	exit 2
	;;
esac
