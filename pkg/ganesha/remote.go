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
// added over D-Bus at once and then every interval, once clusterServes
// says the cluster can serve them. Adding an export of a cluster that
// cannot would hold ganesha's D-Bus thread, and every other export change, for libcephfs's
// mount timeout. Like ganesha's own start, this needs no API server;
// reconciliation does the same for the volumes the PVs name, and Add is
// idempotent.
func (m *ExportManager) ServeRemote(ctx context.Context, interval time.Duration, clusterServes func(context.Context) error) {
	logger := klog.FromContext(ctx)
	reported := map[uint16]string{}
	// The first pass is at once: a replica taking over serves nothing but
	// remote exports, and its clients wait for them.
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
		remote, err := m.UnservedRemote(ctx)
		if err != nil || len(remote) == 0 {
			continue // an error: ganesha restarting, which its supervisor reports
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

// UnservedRemote is Unserved without the local exports: the remote ones
// ServeRemote has still to add.
func (m *ExportManager) UnservedRemote(ctx context.Context) ([]Export, error) {
	unserved, err := m.Unserved(ctx)
	if err != nil {
		return nil, err
	}
	var remote []Export
	for _, e := range unserved {
		if !e.Local() {
			remote = append(remote, e)
		}
	}
	return remote, nil
}
