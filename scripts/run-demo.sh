#!/bin/sh
# Start a skiff server (with its in-process agent: a one-node cluster) in the
# foreground and run a demo workload on it.
# Usage: scripts/run-demo.sh [path/to/skiff]   (DATA_DIR, KUBECONFIG_OUT override paths)
set -eu
BIN=${1:-bin/skiff}
DATA_DIR=${DATA_DIR:-/var/lib/skiff}
KUBECONFIG_OUT=${KUBECONFIG_OUT:-/etc/skiff/skiff.yaml}
DIR=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)

# The demo image is built from the host's busybox-static and handed to the
# agent through its air-gap directory: no registry is needed.
mkdir -p "$DATA_DIR/agent/images"
"$DIR/scripts/busybox-image.sh" "$DATA_DIR/agent/images/demo-busybox.tar" docker.io/library/busybox:stable-skiff >/dev/null

"$BIN" server --data-dir "$DATA_DIR" --write-kubeconfig "$KUBECONFIG_OUT" &
pid=$!
stop() {
	trap - EXIT
	kill -TERM $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	# Containers outlive the agent by design; the demo removes them.
	"$BIN" killall --data-dir "$DATA_DIR" || true
}
trap stop EXIT
trap 'exit 130' INT TERM

export KUBECONFIG="$KUBECONFIG_OUT"
i=0
until [ -s "$KUBECONFIG_OUT" ] && "$BIN" kubectl get namespace default >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then
		echo "skiff server did not become ready" >&2
		exit 1
	fi
	sleep 0.1
done

kubectl=kubectl
command -v kubectl >/dev/null 2>&1 || kubectl="$BIN kubectl"
# The agent registers the node a moment after the API is up.
until "$BIN" kubectl get nodes -o name 2>/dev/null | grep -q .; do sleep 0.1; done
$kubectl wait --for=condition=Ready node --all --timeout=60s >/dev/null
# Pods need the namespace's default service account, which the controllers
# create just after start-up.
until "$BIN" kubectl get serviceaccount default >/dev/null 2>&1; do sleep 0.1; done
"$BIN" kubectl apply -f "$DIR/testdata/demo/"
$kubectl rollout status deployment/web --timeout=90s
"$BIN" kubectl get nodes,pods,svc,endpoints -o wide
echo
$kubectl exec deploy/web -- wget -qO- http://localhost:8080/
# The Service's virtual IP from inside a pod, and its NodePort from this host.
vip=$("$BIN" kubectl get service web -o jsonpath='{.spec.clusterIP}')
echo "ClusterIP $vip:80 from a pod:"
$kubectl exec deploy/web -- wget -qO- "http://$vip/"
nodeport=$("$BIN" kubectl get service web -o jsonpath='{.spec.ports[0].nodePort}')
nodeip=$("$BIN" kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
echo "NodePort $nodeip:$nodeport from the host:"
busybox wget -qO- "http://$nodeip:$nodeport/"
cat <<MSG

skiff is running (server pid $pid). Try:
  export KUBECONFIG=$KUBECONFIG_OUT
  kubectl get pods -o wide                 # upstream kubectl works unchanged
  kubectl logs deploy/web
  kubectl exec -it deploy/web -- sh
  kubectl scale deployment/web --replicas=4 && kubectl get pods -w
  $BIN kubectl describe deployment web     # or the embedded client
Ctrl-C stops the server and the demo's containers; state stays in $DATA_DIR.
MSG
wait $pid || true
