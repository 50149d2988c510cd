// Package failover makes one of two provisioner replicas over CephFS the
// only server of a store: it fences every other server of the store through
// Ceph (MDS session eviction, which blocklists the evicted client in the OSD
// map) and mounts the store's shared state directory with ceph-fuse.
//
// The rule it implements: a server serves only after it fenced every other
// server through Ceph; a lease alone never makes a second server. The lease
// says who should serve; the fence makes sure nobody else can.
package failover
