#!/usr/bin/env bash
# image.sh builds the provisioner image from the Dockerfile with podman (or
# buildah when podman is absent).
#
#   hack/image.sh [IMAGE]   build IMAGE (default localhost/nfs-provisioner:dev)
#   hack/image.sh --env     print the environment podman needs on this machine
#                           (eval it before running podman yourself)
#   hack/image.sh --bases   only make sure the two base images exist
#
# On a normal machine it just builds: the Dockerfile's base images are pulled.
# Where no registry answers (CI VMs, air-gapped hosts), each base image that
# is absent and cannot be pulled is made locally:
#   debian:bookworm-slim   mmdebstrap --variant=minbase of bookworm (+updates, +security)
#   golang:1.26-bookworm   that Debian plus this machine's Go toolchain (same minor)
# And where podman's defaults do not work, it writes a containers.conf and
# points CONTAINERS_CONF at it:
#   * cgroup v1 or hybrid hierarchy: crun refuses it, so runtime = "runc";
#   * no CAP_SYS_RESOURCE (nested VMs, unprivileged containers): podman's
#     default ulimits cannot be applied, so explicit ones within ours.
#
# Environment: ARCH=arm64 builds for another platform (needs qemu-user-static
# with binfmt_misc for the Dockerfile's RUN steps of the final stage).
# VARIANT=ceph builds the variant with CephFS support (the Dockerfile's VARIANT).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cache=${XDG_CACHE_HOME:-$HOME/.cache}/nfs-provisioner
debian_image=docker.io/library/debian:bookworm-slim
golang_image=docker.io/library/golang:1.26-bookworm
packages=(podman buildah runc fuse-overlayfs uidmap slirp4netns containernetworking-plugins
	golang-github-containers-common catatonit conmon mmdebstrap iptables)

log() { echo "image: $*" >&2; }

# containers_env prints "export CONTAINERS_CONF=..." when this machine needs
# settings of its own, after writing them; nothing otherwise.
containers_env() {
	local conf="$cache/containers.conf" body=""
	foreign_storage
	if [ -n "${CONTAINERS_CONF:-}" ]; then
		return 0 # the caller chose one
	fi
	if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
		body+=$'[engine]\n# cgroup v1/hybrid: crun refuses it, runc works.\nruntime = "runc"\n'
	fi
	local eff
	eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
	if ((((0x$eff >> 24) & 1) == 0)); then
		local nofile nproc
		nofile=$(ulimit -Hn)
		nproc=$(ulimit -Hu)
		[ "$nofile" = unlimited ] && nofile=1048576
		# runc fails to apply a higher nproc here (EPERM even at our own hard
		# limit, 96365 on the CI VM); 32768 works and is plenty for a build.
		if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
		# No CAP_SYS_RESOURCE: a container may not get more than we have.
		body=$'[containers]\n'"default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"$'\n'"$body"
	fi
	[ -n "$body" ] || return 0
	mkdir -p "$cache"
	if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$body" ]; then
		printf '%s' "$body" >"$conf"
	fi
	echo "export CONTAINERS_CONF=$conf"
}

# foreign_storage: images of another architecture go to a store of their own,
# because the Dockerfile names its bases by tag, and the local bases of the
# two architectures would take the same names.
foreign_storage() {
	[ -n "${ARCH:-}" ] && [ "$ARCH" != "$(dpkg --print-architecture)" ] || return 0
	local conf="$cache/storage-$ARCH.conf"
	mkdir -p "$cache"
	printf '[storage]\ndriver = "overlay"\ngraphroot = "/var/lib/containers/storage-%s"\nrunroot = "/run/containers/storage-%s"\n' "$ARCH" "$ARCH" >"$conf"
	echo "export CONTAINERS_STORAGE_CONF=$conf"
}

engine() {
	if command -v podman >/dev/null; then echo podman; else echo buildah; fi
}

image_exists() {
	case $(engine) in
	podman) podman image exists "$1" ;;
	buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
	esac
}

# pull_or_false tries the registry once; where none answers it fails in
# well under a second (DNS), and the base image is made locally.
pull_or_false() {
	timeout 120 "$(engine)" pull -q "$1" >/dev/null 2>&1
}

make_debian() {
	local tmp
	tmp=$(mktemp -d)
	log "making $debian_image with mmdebstrap (about 20 s)"
	# The same three sources as the official image.
	mmdebstrap --quiet --variant=minbase --mode=root --arch="${ARCH:-$(dpkg --print-architecture)}" \
		bookworm "$tmp/rootfs.tar" \
		"deb http://deb.debian.org/debian bookworm main" \
		"deb http://deb.debian.org/debian bookworm-updates main" \
		"deb http://deb.debian.org/debian-security bookworm-security main"
	# The official image's settings.
	buildah_import "$tmp/rootfs.tar" "$debian_image"
	rm -rf "$tmp"
}

buildah_import() {
	local tar=$1 name=$2 c
	c=$(buildah from scratch)
	buildah add --quiet "$c" "$tar" / >/dev/null
	buildah config --cmd '["bash"]' \
		--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		${ARCH:+--arch "$ARCH"} "$c"
	buildah commit --quiet --rm "$c" "$name" >/dev/null
}

make_golang() {
	local goroot gover c
	command -v go >/dev/null || { log "go is not in PATH: cannot make $golang_image"; exit 1; }
	goroot=$(go env GOROOT)
	gover=$(go env GOVERSION)
	case $gover in
	go1.26 | go1.26.*) ;;
	*) log "$golang_image needs Go 1.26; this machine has $gover"; exit 1 ;;
	esac
	log "making $golang_image from $debian_image and this machine's $gover"
	c=$(buildah from --pull=never "$debian_image")
	buildah copy --quiet "$c" "$goroot" /usr/local/go >/dev/null
	# Outgoing HTTPS may go through a proxy with its own CA: the build
	# stage's `go mod download` needs the host's bundle.
	buildah copy --quiet "$c" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
	local env=(--env GOLANG_VERSION="${gover#go}" --env GOTOOLCHAIN=local --env GOPATH=/go
		--env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
	local v
	for v in GOPROXY GOFLAGS GONOSUMDB GOPRIVATE GOSUMDB; do
		[ -n "$(go env $v)" ] && env+=(--env "$v=$(go env $v)")
	done
	buildah config "${env[@]}" --workingdir /go "$c"
	buildah commit --quiet --rm "$c" "$golang_image" >/dev/null
}

ensure_bases() {
	if ! image_exists "$debian_image"; then
		if pull_or_false "$debian_image"; then log "pulled $debian_image"; else make_debian; fi
	fi
	if ! image_exists "$golang_image"; then
		if pull_or_false "$golang_image"; then log "pulled $golang_image"; else make_golang; fi
	fi
}

build() {
	local image=$1 version revision platform=()
	version=$(cd "$root" && git describe --tags --always 2>/dev/null || echo dev)
	revision=$(cd "$root" && git rev-parse HEAD 2>/dev/null || echo unknown)
	[ -n "${ARCH:-}" ] && platform=(--platform "linux/$ARCH")
	log "building $image with $(engine)"
	local start
	start=$(date +%s)
	# --pull=never: the bases are present by now, pulled or made.
	"$(engine)" build --pull=never "${platform[@]}" \
		--build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg VARIANT="${VARIANT:-}" \
		-t "$image" -f "$root/Dockerfile" "$root"
	log "built $image in $(($(date +%s) - start)) s"
}

install_tools() {
	if [ -n "${ARCH:-}" ] && [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
		# mmdebstrap of a foreign architecture runs its scripts under qemu.
		packages+=(arch-test qemu-user-static binfmt-support)
		[ -e "/proc/sys/fs/binfmt_misc/qemu-$(arch_qemu)" ] ||
			log "binfmt_misc has no qemu-$(arch_qemu) entry: RUN steps of $ARCH will fail (see README, Multi-arch)"
	fi
	"$here/install-deps.sh" "${packages[@]}" >/dev/null
}

arch_qemu() {
	case $ARCH in arm64) echo aarch64 ;; amd64) echo x86_64 ;; *) echo "$ARCH" ;; esac
}

case ${1:-} in
--env)
	containers_env
	;;
--bases)
	install_tools
	eval "$(containers_env)"
	ensure_bases
	;;
-*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
	exit 2
	;;
*)
	install_tools
	eval "$(containers_env)"
	ensure_bases
	build "${1:-localhost/nfs-provisioner:dev}"
	;;
esac
