#!/usr/bin/env bash
# build-controlplane.sh builds etcd, kube-apiserver and kube-controller-manager
# from hack/controlplane into a cache directory outside the repository, and
# prints that directory on stdout.
#
#   hack/build-controlplane.sh           etcd, kube-apiserver, kube-controller-manager
#   hack/build-controlplane.sh kubelet   the same, and kubelet (from the same
#                                        Kubernetes module), for running the
#                                        shipped manifests on a real node
#
# It is idempotent: the cache is keyed by a hash of hack/controlplane/go.mod
# and go.sum, and a complete cache is reused without running the Go tool.
# A cold build takes about 7 minutes on 2 cores.
#
# Environment:
#   CONTROLPLANE_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/nfs-provisioner/controlplane)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod="$here/controlplane"
key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12)
root=${CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfs-provisioner/controlplane}
bin="$root/$key"
bins=(etcd kube-apiserver kube-controller-manager)
marker=.complete
pkgs=(go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
if [ "${1:-}" = kubelet ]; then
	bins+=(kubelet)
	marker=.complete-kubelet
	pkgs+=(k8s.io/kubernetes/cmd/kubelet)
fi

log() { echo "build-controlplane: $*" >&2; }

complete() {
	local b
	[ -f "$bin/$marker" ] || return 1
	for b in "${bins[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if complete; then
	log "cached in $bin"
	echo "$bin"
	exit 0
fi
command -v go >/dev/null || { log "go is not in PATH"; exit 1; }

k8s=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$mod/go.mod")
minor=$(echo "$k8s" | cut -d. -f2)
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	# So that /version reports the release instead of v0.0.0-master.
	ldflags="$ldflags -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor"
	ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$bin"
start=$(date +%s)
log "building kubernetes $k8s and etcd into $bin (cold: about 7 min on 2 cores)"
cd "$mod"
export GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod
# go build -v names each package as it compiles it; turn that into a progress line.
go build -v -trimpath -ldflags "$ldflags" -o "$bin/" "${pkgs[@]}" 2>&1 |
	awk -v t0="$start" '
		# Package paths have no spaces; anything else is a message worth showing.
		/ / { print; fflush(); next }
		{ n++; if (n % 250 == 0) { printf "build-controlplane: %d packages compiled, %d s\n", n, systime() - t0; fflush() } }
		END { printf "build-controlplane: %d packages compiled\n", n }' >&2
status=${PIPESTATUS[0]}
if [ "$status" != 0 ]; then
	log "go build failed (exit $status)"
	exit "$status"
fi
# The etcd main package is the root of go.etcd.io/etcd/server/v3, and go build
# names a binary after the import path less its major-version suffix: "server".
mv -f "$bin/server" "$bin/etcd"
for b in "${bins[@]}"; do [ -x "$bin/$b" ] || { log "missing $bin/$b after build"; exit 1; }; done
touch "$bin/.complete" "$bin/$marker"
log "built in $(($(date +%s) - start)) s"
echo "$bin"
