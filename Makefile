# Every target works on a fresh Debian/Ubuntu machine with Go installed.
# `make deps test` installs what is missing and runs every test.

SHELL := /bin/bash
GO ?= go
# The control-plane binaries live in a cache outside the repository;
# hack/build-controlplane.sh prints where (building them first if needed).
CONTROLPLANE_BIN ?= $(shell hack/build-controlplane.sh 2>/dev/null)
export CONTROLPLANE_BIN
TEST_FLAGS ?= -count=1 -timeout 60m
BENCH_FLAGS ?= -run '^$$' -benchtime 1x -timeout 60m

.PHONY: all build deps controlplane test test-unit lint bench demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -o bin/nfs-provisioner ./cmd/provisioner

# deps: Debian packages (ganesha, dbus, rpcbind, NFS clients, MariaDB) and the
# control-plane build. Both are no-ops when already done.
deps:
	hack/install-deps.sh
	hack/build-controlplane.sh >/dev/null

controlplane:
	hack/build-controlplane.sh

# test: unit and end-to-end tests, verbose so that each test's PASS shows.
test: lint
	@test -n "$(CONTROLPLANE_BIN)" || { echo "control plane not built: run make deps"; exit 1; }
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

clean:
	rm -rf bin
