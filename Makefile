# Every target works on a fresh Debian/Ubuntu machine with Go installed.
#   make demo            the whole system on this machine, then everything stopped
#   make demo KEEP=1     the same, left running; make demo-stop stops it
#   make deps test demo  install what is missing, run every test, then the demo (CI)

SHELL := /bin/bash
GO ?= go
TEST_FLAGS ?= -count=1 -timeout 60m
BENCH_FLAGS ?= -run '^$$' -benchtime 1x -timeout 60m

.PHONY: all build deps controlplane test test-unit lint bench demo demo-stop clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -o bin/nfs-provisioner ./cmd/provisioner

# deps: Debian packages (ganesha, dbus, rpcbind, NFS clients, MariaDB) and the
# control-plane build (etcd, kube-apiserver, kube-controller-manager) into a
# cache outside the repository. Both are no-ops when already done. Tests find
# the cache by themselves; CONTROLPLANE_BIN overrides it.
deps:
	hack/install-deps.sh
	hack/build-controlplane.sh >/dev/null

controlplane:
	hack/build-controlplane.sh

# test: unit and end-to-end tests, verbose so that each test's PASS shows.
test: lint
	$(GO) test -v $(TEST_FLAGS) ./...

# test-unit: only the tests that need neither a cluster nor an NFS server.
test-unit:
	$(GO) test -short $(TEST_FLAGS) ./...

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# bench: the speed and memory targets, measured on the real control plane and
# the real ganesha.nfsd.
bench:
	$(GO) test $(BENCH_FLAGS) -bench . -benchmem ./...

demo: deps build
	$(GO) build -o bin/nfs-provisioner-demo ./hack/demo
	bin/nfs-provisioner-demo -keep=$(if $(filter 1,$(KEEP)),true,false)

demo-stop:
	$(GO) build -o bin/nfs-provisioner-demo ./hack/demo
	bin/nfs-provisioner-demo -stop

clean:
	rm -rf bin
