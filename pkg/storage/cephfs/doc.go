// Package cephfs keeps volumes as subvolumes of a CephFS the user already
// runs (Rook, cephadm, or any other), reached through a ceph.conf and a
// keyring. It never deploys or changes the cluster beyond its own subvolume
// group and the cephx identities of its volumes.
//
// Each volume is a subvolume of the mgr volumes module, in one group per
// store: its size is the subvolume's quota, expansion raises it, a clone is
// a `subvolume snapshot clone`. Each volume gets a cephx identity whose MDS
// caps are confined to the subvolume's path; ganesha mounts the volume with
// it (FSAL_CEPH), so the MDS refuses anything outside the volume whatever
// file handle an NFS client forges. Nothing of a volume lives on this node.
//
// The backend drives the cluster with the ceph command of ceph-common, a
// child process per call with a deadline, rather than go-ceph: go-ceph
// needs cgo and the Ceph C libraries at build time and in every image,
// which would make the default build and image heavier for users who never
// use Ceph. The ceph command is needed only where CephFS volumes are made
// (the image variant with Ceph), and the mgr volumes module, which it talks
// to, does the subvolume work itself. The price is a process per call
// (tens of milliseconds of CPU each): calls are bounded in number, and a
// reconciliation pass costs one `subvolume ls`, not two calls a volume.
package cephfs
