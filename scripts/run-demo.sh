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
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM

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

"$BIN" kubectl apply -f "$DIR/testdata/demo/"
"$BIN" kubectl get all
cat <<MSG

skiff is running (pid $pid). Try:
  export KUBECONFIG=$KUBECONFIG_OUT
  kubectl get ns,svc,deploy -A          # upstream kubectl works unchanged
  $BIN kubectl get pods -o wide         # or the embedded client
Ctrl-C stops the server; state stays in $DATA_DIR.
MSG
wait $pid
