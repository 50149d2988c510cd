# syntax=docker/dockerfile:1
#
# The provisioner image: the static Go binary on Debian bookworm with
# NFS-Ganesha (FSAL VFS), dbus-daemon (ganesha's private export-manager bus)
# and rpcbind (NFSv3). Multi-arch:
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
COPY pkg/ pkg/
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/nfs-provisioner ./cmd/provisioner

FROM debian:bookworm-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="nfs-provisioner" \
      org.opencontainers.image.description="Dynamic NFS volume provisioner for Kubernetes with an embedded NFS-Ganesha server" \
      org.opencontainers.image.source="https://github.com/nfs-provisioner/nfs-provisioner" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
# Keep docs, man pages and locales out of the image even where a package
# ships them; the copyright files stay, as the licences ask.
# systemd is not installed: the provisioner only uses its
# systemd-socket-activate to keep rpcbind on loopback in tests, and in a pod
# rpcbind has to listen on the pod's address anyway.
RUN printf '%s\n' \
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
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log
COPY --from=build /out/nfs-provisioner /usr/local/bin/nfs-provisioner
# Volumes and the provisioner's state live here (a hostPath in the shipped
# StatefulSet). Declared so that a plain `docker run` puts it on the host's
# file system: ganesha's VFS backend needs file handles (open_by_handle_at),
# which the container's overlay file system does not reliably provide.
VOLUME ["/export"]
# NFS, mountd, rpcbind, /healthz and /readyz.
EXPOSE 2049/tcp 20048/tcp 111/tcp 111/udp 8080/tcp
ENTRYPOINT ["/usr/local/bin/nfs-provisioner"]
