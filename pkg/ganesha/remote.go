package ganesha

import (
	"context"
	"time"

	"k8s.io/klog/v2"
)

// ServeRemote keeps the remote (CephFS) exports of this manager's files
// served, until ctx ends: ganesha never starts with them (its start would
// wait for the cluster, and every local export's NFS service with it), so
// after every start of ganesha, and after an Add that failed, they are
// added over D-Bus, every interval, once clusterServes says the cluster
// can serve them. Adding an export of a cluster that cannot would hold
// ganesha's D-Bus thread, and every other export change, for libcephfs's
// mount timeout. Like ganesha's own start, this needs no API server;
// reconciliation does the same for the volumes the PVs name, and Add is
// idempotent.
func (m *ExportManager) ServeRemote(ctx context.Context, interval time.Duration, clusterServes func(context.Context) error) {
	logger := klog.FromContext(ctx)
	reported := map[uint16]string{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		unserved, err := m.Unserved(ctx)
		if err != nil {
			continue // ganesha restarting: its supervisor reports that
		}
		var remote []Export
		for _, e := range unserved {
			if !e.Local() {
				remote = append(remote, e)
			}
		}
		if len(remote) == 0 {
			continue
		}
		callCtx, cancel := context.WithTimeout(ctx, time.Minute)
		err = clusterServes(callCtx)
		cancel()
		if err != nil {
			logger.V(2).Info("Remote exports wait for their cluster", "exports", len(remote), "err", err)
			continue
		}
		for _, e := range remote {
			if err := m.Add(ctx, e); err != nil {
				// Once per export and error: the export of a volume deleted
				// while the provisioner was away fails until reconciliation
				// drops it.
				if reported[e.ID] != err.Error() {
					logger.Error(err, "Could not serve a remote export again; retrying", "exportID", e.ID, "pseudo", e.Pseudo)
					reported[e.ID] = err.Error()
				}
				continue
			}
			delete(reported, e.ID)
			logger.Info("Serving a remote export again", "exportID", e.ID, "pseudo", e.Pseudo, "fsal", e.FSAL.Name)
		}
	}
}
