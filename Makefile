# Every target works on a fresh Debian/Ubuntu machine with Go installed.
#   make demo            the whole system on this machine, then everything stopped
#   make demo KEEP=1     the same, left running; make demo-stop stops it
#   make image           the container image (podman or buildah; IMAGE=... names it; IMAGE_VARIANT=ceph adds CephFS)
#   make test-image      run that image as Kubernetes' storage e2e suite does
#   make deps test test-image demo   install what is missing, run every test, then the demo (CI)

SHELL := /bin/bash
GO ?= go
# -p 1: packages one at a time. Several test packages run NFSv3 servers,
# and rpcbind (port 111) is one per machine: a server that stops takes the
# registrations of one starting in another package with it.
TEST_FLAGS ?= -count=1 -timeout 60m -p 1
BENCH_FLAGS ?= -run '^$$' -benchtime 1x -timeout 60m
IMAGE ?= localhost/nfs-provisioner:dev
# IMAGE_VARIANT=ceph adds CephFS volumes (ceph-common, nfs-ganesha-ceph).
IMAGE_VARIANT ?=

.PHONY: all build build-arm64 deps controlplane test test-unit test-image image lint bench demo demo-stop clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -o bin/nfs-provisioner ./cmd/provisioner

# build-arm64: the image's other platform compiles (part of lint, so CI).
build-arm64:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -o bin/nfs-provisioner-linux-arm64 ./cmd/provisioner

# deps: Debian packages (ganesha, dbus, rpcbind, NFS clients, MariaDB), the
# control-plane build (etcd, kube-apiserver, kube-controller-manager) and
# Helm (hack/helm, for the chart's tests) into caches outside the
# repository, and prometheus-operator's CRDs (hack/monitoring-crds) into the
# Go module cache. All are no-ops when already done. Tests find the caches by
# themselves; CONTROLPLANE_BIN and HELM override them.
deps:
	hack/install-deps.sh
	hack/build-controlplane.sh >/dev/null
	hack/build-helm.sh >/dev/null
	cd hack/monitoring-crds && GOWORK=off GOFLAGS=-mod=readonly $(GO) mod download

controlplane:
	hack/build-controlplane.sh

# test: unit and end-to-end tests, verbose so that each test's PASS shows.
test: lint
	$(GO) test -v $(TEST_FLAGS) ./...

# test-unit: only the tests that need neither a cluster nor an NFS server.
test-unit:
	$(GO) test -short $(TEST_FLAGS) ./...

lint: build-arm64
	$(GO) vet ./...
	$(GO) vet -tags image,kubelet ./test/image/ ./test/kubelet/
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# bench: the speed and memory targets, measured on the real control plane and
# the real ganesha.nfsd.
bench:
	$(GO) test $(BENCH_FLAGS) -bench . -benchmem ./...

# image: the Dockerfile built with podman or buildah. hack/image.sh makes the
# base images locally where no registry answers, and the podman settings
# machines like CI's VM need.
image:
	VARIANT=$(IMAGE_VARIANT) hack/image.sh $(IMAGE)

# test-image: the built image run as the storage e2e suite runs the upstream
# one, against the test control plane (test/image, build tag "image").
test-image: image
	eval "$$(hack/image.sh --env)"; IMAGE=$(IMAGE) $(GO) test -tags image -v $(TEST_FLAGS) ./test/image/

demo: deps build
	$(GO) build -o bin/nfs-provisioner-demo ./hack/demo
	bin/nfs-provisioner-demo -keep=$(if $(filter 1,$(KEEP)),true,false)

demo-stop:
	$(GO) build -o bin/nfs-provisioner-demo ./hack/demo
	bin/nfs-provisioner-demo -stop

clean:
	rm -rf bin
