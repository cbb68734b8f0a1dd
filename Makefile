# skiff — build, run, test, benchmark. The README names these targets.

GO        ?= go
BIN       ?= bin/skiff
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/skiff-dev/skiff/internal/server.Version=$(VERSION)
DATA_DIR  ?= /var/lib/skiff
# Tests run as root on a 2-core machine; keep parallelism modest.
TEST_FLAGS ?= -count=1 -timeout 30m -p 2

.PHONY: all build run test unit e2e bench fuzz vet clean

all: build

build:
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

# Build, start a server on this machine, apply the demo workload, and keep
# the server in the foreground (Ctrl-C stops it).
run: build
	DATA_DIR=$(DATA_DIR) scripts/run-demo.sh $(BIN)

# The whole suite: unit, API, conformance and end-to-end tests (upstream
# kubectl against the built binary). This is what CI runs.
test: vet
	$(GO) test $(TEST_FLAGS) ./...

unit:
	$(GO) test $(TEST_FLAGS) -short ./...

e2e: build
	$(GO) test $(TEST_FLAGS) ./internal/e2e/...

vet:
	$(GO) vet ./...

# Benchmarks: store durable writes/s, churn file size with compaction, watch
# fan-out; API create latency and watch delivery; scheduling decisions and
# binds; Service rule sync, ClusterIP vs pod-IP connections, route sync;
# binary size, time to ready and RSS; the 1,000-node, 30,000-pod
# control-plane run over skiff sim (SKIFF_BENCH_NODES/SKIFF_BENCH_PODS). The etcd comparisons run when /usr/bin/etcd exists
# (apt-get install etcd-server).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3s -timeout 60m ./internal/store/... ./internal/apiserver/... ./internal/scheduler/... ./internal/runtime/... ./internal/proxy/... ./internal/network/... ./internal/e2e/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeDefaultValidate -fuzztime 60s ./internal/apiserver/

clean:
	rm -rf bin
