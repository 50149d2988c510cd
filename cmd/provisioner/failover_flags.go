package main

import (
	"flag"
	"fmt"
	"time"
)

// failoverOptions are the flags of active/passive failover over CephFS
// (docs/failover.md).
type failoverOptions struct {
	enabled        bool
	leaseDuration  time.Duration
	renewDeadline  time.Duration
	retryPeriod    time.Duration
	stateSubvolume string
	radosPool      string
}

func (f *failoverOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.enabled, "failover", false, "Active/passive failover between replicas over CephFS: the replica holding the Lease fences every other server of the store through Ceph, mounts the store's state from CephFS and serves; the others wait, not ready. Needs -leader-elect and -ceph-conf; offers CephFS volumes only. See docs/failover.md.")
	fs.DurationVar(&f.leaseDuration, "failover-lease-duration", 5*time.Second, "With -failover: how long a passive replica waits after the active's last renewal before it takes over.")
	fs.DurationVar(&f.renewDeadline, "failover-renew-deadline", 3*time.Second, "With -failover: how long the active may fail to renew its Lease before it stops serving and exits (it must be shorter than -failover-lease-duration).")
	fs.DurationVar(&f.retryPeriod, "failover-retry-period", time.Second, "With -failover: how often the Lease is renewed, and tried by the passive replicas.")
	fs.StringVar(&f.stateSubvolume, "failover-state-subvolume", "", "With -failover: the CephFS subvolume (default group) holding the store's state; mounted at -export-dir with ceph-fuse by the active replica. Default: <ceph-subvolume-group>-state.")
	fs.StringVar(&f.radosPool, "failover-rados-pool", "nfs-ganesha", "With -failover: the RADOS pool of ganesha's NFSv4 recovery database (rados_ng; one namespace per store). -ceph-user needs rw on it, and its keyring must be where -ceph-conf says or in /etc/ceph/ceph.client.<user>.keyring.")
}

func (f *failoverOptions) validate(o *options) error {
	if !f.enabled {
		return nil
	}
	switch {
	case !o.leaderElect:
		return fmt.Errorf("-failover needs -leader-elect: the Lease says which replica should serve")
	case o.cephConf == "":
		return fmt.Errorf("-failover needs -ceph-conf: the store's state and volumes live in CephFS, and the fence goes through Ceph")
	case !o.runServer:
		return fmt.Errorf("-failover needs -run-server: the replica that serves must be the one that fenced")
	case f.retryPeriod <= 0 || f.renewDeadline <= time.Duration(1.2*float64(f.retryPeriod)) || f.leaseDuration <= f.renewDeadline:
		return fmt.Errorf("-failover-lease-duration=%s > -failover-renew-deadline=%s > 1.2 × -failover-retry-period=%s must hold",
			f.leaseDuration, f.renewDeadline, f.retryPeriod)
	}
	if f.stateSubvolume == "" {
		f.stateSubvolume = o.cephGroup + "-state"
	}
	return nil
}
