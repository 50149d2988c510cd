#!/usr/bin/env bash
# build-helm.sh builds the Helm CLI from hack/helm (its own Go module, never
# the project's) into a cache directory outside the repository, and prints
# the binary's path on stdout.
#
# Idempotent: the cache is keyed by a hash of hack/helm/go.mod and go.sum; a
# complete build is reused without running the Go tool. Cold: about 2 min on
# 2 cores.
#
# Environment:
#   HELM_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/nfs-provisioner/helm)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod="$here/helm"
key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12)
root=${HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfs-provisioner/helm}
bin="$root/$key"

log() { echo "build-helm: $*" >&2; }

# One build at a time: a second caller waits and then finds it complete.
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
if [ -f "$bin/.complete" ] && [ -x "$bin/helm" ]; then
	log "cached in $bin"
	echo "$bin/helm"
	exit 0
fi
command -v go >/dev/null || { log "go is not in PATH"; exit 1; }
version=$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" {print $3; exit}' "$mod/go.mod")
mkdir -p "$bin"
start=$(date +%s)
log "building helm $version into $bin"
cd "$mod"
export GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod
# So that `helm version` names the release.
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
	-o "$bin/helm" helm.sh/helm/v3/cmd/helm
touch "$bin/.complete"
log "built in $(($(date +%s) - start)) s"
echo "$bin/helm"
