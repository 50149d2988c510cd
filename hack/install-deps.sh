#!/usr/bin/env bash
# install-deps.sh installs the Debian packages the tests and the demo need.
#
# apt on these machines fails now and then for reasons that a second try
# fixes: another apt run holding the lock, or an Essential package (perl-base)
# upgraded in a separate dpkg call whose .deb a post-invoke hook already
# deleted. So every step is retried, and nothing is done when all packages
# are present already.
#
#   hack/install-deps.sh [PACKAGE...]   (default: everything the project needs)
set -euo pipefail

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
	packages=(
		nfs-ganesha nfs-ganesha-vfs dbus rpcbind systemd  # the embedded NFS server
		libnfs-utils                                      # real NFS clients for tests
		xfsprogs e2fsprogs                                # filesystem volumes (pkg/storage/fsimage)
		prometheus                                        # metrics e2e and promtool (alert rules)
		openssl util-linux procps iproute2 curl           # harness helpers (setpriv, ss)
		mariadb-server mariadb-client mariadb-backup socat # test/mysql
		ceph-mon ceph-mgr ceph-osd ceph-mds ceph-common   # test/framework/cephbed: a single-node Ceph
		ceph-fuse nfs-ganesha-ceph nfs-ganesha-rados-grace # CephFS checks, FSAL_CEPH, rados recovery
	)
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#packages[@]} packages already installed"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Package scripts must not start ganesha, rpcbind or mariadbd as system
# services: the tests and the demo start their own, on loopback ports, and a
# system daemon would hold port 2049, 111 or 3306. Container images usually
# ship a policy-rc.d that forbids starts; where there is none, one is put in
# place for the duration of the install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# installed by nfs-provisioner hack/install-deps.sh for one install\nexit 101\n' >"$policy"
	chmod +x "$policy"
	trap 'rm -f "$policy"' EXIT
fi
retry() {
	local n
	for n in 1 2 3 4 5; do
		"$@" && return 0
		echo "install-deps: '$*' failed (try $n of 5); retrying in $((n * 3)) s" >&2
		sleep $((n * 3))
	done
	return 1
}
start=$(date +%s)
echo "install-deps: installing ${missing[*]}"
retry apt-get update -q
# perl-base first: see the comment at the top.
retry apt-get install -y -q --no-install-recommends perl-base
# policy-rc.d keeps package scripts from starting the services; we start
# ganesha, dbus, rpcbind and mariadbd ourselves, on loopback, by PID.
retry apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done in $(($(date +%s) - start)) s"
