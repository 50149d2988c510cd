# syntax=docker/dockerfile:1
#
# The provisioner image: the static Go binary on Debian bookworm with
# NFS-Ganesha (FSAL VFS), dbus-daemon (ganesha's private export-manager bus),
# rpcbind and netbase (NFSv3). `make image` builds it with podman or buildah
# (hack/image.sh: on machines without a registry it makes the two base images
# locally). Multi-arch:
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/nfs-provisioner:<tag> .
# The Go stage runs on the build machine's platform and cross-compiles, so
# no emulation is needed for it.

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Modules first: this layer stays cached while only the sources change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY pkg/ pkg/
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/nfs-provisioner ./cmd/provisioner

FROM debian:bookworm-slim
# Keep docs, man pages and locales out of the image even where a package
# ships them; the copyright files stay, as the licences ask.
# systemd is not installed: the provisioner only uses its
# systemd-socket-activate to keep rpcbind on loopback in tests, and in a pod
# rpcbind has to listen on the pod's address anyway.
# netbase: rpcbind resolves the service "sunrpc" through /etc/services, which
# debian:bookworm-slim lacks; without it rpcbind exits ("Servname not
# supported for ai_socktype") and NFSv3, on by default, cannot start. The
# provisioner checks it at start (pkg/ganesha/preflight.go).
# xfsprogs, e2fsprogs: mkfs, growfs, fsck and UUID tools of filesystem
# volumes (fsType), used in the privileged variant only.
# VARIANT=ceph (make image IMAGE_VARIANT=ceph) adds what CephFS volumes
# (fsType: cephfs) need: ganesha's FSAL_CEPH and the ceph command, and
# ceph-fuse, which mounts the store's state in failover mode (-failover). The
# default image has none of it.
ARG VARIANT=
RUN case "$VARIANT" in \
        "") extra="" ;; \
        ceph) extra="nfs-ganesha-ceph ceph-common ceph-fuse" ;; \
        *) echo "unknown VARIANT=$VARIANT (want empty or ceph)" >&2; exit 1 ;; \
    esac \
    && printf '%s\n' \
        'path-exclude /usr/share/doc/*' \
        'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' \
        'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' \
        > /etc/dpkg/dpkg.cfg.d/nfs-provisioner-nodoc \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nfs-ganesha \
        nfs-ganesha-vfs \
        dbus \
        rpcbind \
        netbase \
        xfsprogs \
        e2fsprogs \
        $extra \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log
# After the package layer: a new revision must not rebuild it (build
# arguments reach every later RUN step and so bust its cache).
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="nfs-provisioner" \
      org.opencontainers.image.description="Dynamic NFS volume provisioner for Kubernetes with an embedded NFS-Ganesha server" \
      org.opencontainers.image.source="https://github.com/nfs-provisioner/nfs-provisioner" \
      org.opencontainers.image.url="https://github.com/nfs-provisioner/nfs-provisioner" \
      org.opencontainers.image.documentation="https://github.com/nfs-provisioner/nfs-provisioner/blob/main/docs/install.md" \
      org.opencontainers.image.vendor="nfs-provisioner maintainers" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
COPY --from=build /out/nfs-provisioner /usr/local/bin/nfs-provisioner
# Volumes and the provisioner's state live here (a hostPath in the shipped
# StatefulSet). Declared so that a plain `docker run` puts it on the host's
# file system: ganesha's VFS backend needs file handles (open_by_handle_at),
# which the container's overlay file system does not reliably provide.
VOLUME ["/export"]
# NFS, mountd, rpcbind, /healthz and /readyz.
EXPOSE 2049/tcp 20048/tcp 111/tcp 111/udp 8080/tcp
# Exec form, no shell: the provisioner is PID 1 and gets the runtime's
# SIGTERM itself; it stops ganesha cleanly before it exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/nfs-provisioner"]
