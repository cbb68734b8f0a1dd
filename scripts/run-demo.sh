#!/bin/sh
# Start a skiff server in the foreground with a demo workload applied.
# Usage: scripts/run-demo.sh [path/to/skiff]   (DATA_DIR, KUBECONFIG_OUT override paths)
set -eu
BIN=${1:-bin/skiff}
DATA_DIR=${DATA_DIR:-/var/lib/skiff}
KUBECONFIG_OUT=${KUBECONFIG_OUT:-/etc/skiff/skiff.yaml}
DIR=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)

"$BIN" server --data-dir "$DATA_DIR" --write-kubeconfig "$KUBECONFIG_OUT" --disable-agent &
pid=$!
sim=
trap 'kill -TERM $sim $pid 2>/dev/null; wait' INT TERM

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

# The agent that runs containers is not built yet: two simulated nodes take
# the pods instead (they report them Running without starting anything).
"$BIN" sim --nodes 2 --kubeconfig "$KUBECONFIG_OUT" &
sim=$!

"$BIN" kubectl apply -f "$DIR/testdata/demo/"
kubectl=kubectl
command -v kubectl >/dev/null 2>&1 || kubectl="$BIN kubectl"
$kubectl rollout status deployment/web --timeout=60s
"$BIN" kubectl get nodes,pods,svc,endpoints -o wide
cat <<MSG

skiff is running (server pid $pid, simulated nodes pid $sim). Try:
  export KUBECONFIG=$KUBECONFIG_OUT
  kubectl get ns,svc,deploy -A          # upstream kubectl works unchanged
  kubectl scale deployment/web --replicas=5 && kubectl get pods -o wide
  kubectl describe deployment web
  $BIN kubectl get pods -o wide         # or the embedded client
Ctrl-C stops the server; state stays in $DATA_DIR.
MSG
wait $pid
