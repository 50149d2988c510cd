package main

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
)

// remoteExportsEvery is how often unserved CephFS exports are looked for.
const remoteExportsEvery = 10 * time.Second

// serveRemoteExports serves the CephFS exports of the store's export files
// that ganesha does not serve: ganesha never starts with them (its start
// would wait for the cluster, and every local volume's NFS service with
// it), so after every start of ganesha they are added over D-Bus, once the
// cluster answers. Like ganesha's own start, this needs no API server.
// Reconciliation does the same for the volumes the PVs name; Add is
// idempotent.
func serveRemoteExports(ctx context.Context, exports *ganesha.ExportManager, clusterAnswers func(context.Context) error) {
	logger := klog.FromContext(ctx)
	reported := map[uint16]string{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(remoteExportsEvery):
		}
		unserved, err := exports.Unserved(ctx)
		if err != nil {
			continue // ganesha restarting: the supervisor says so
		}
		var remote []ganesha.Export
		for _, e := range unserved {
			if !e.Local() {
				remote = append(remote, e)
			}
		}
		if len(remote) == 0 {
			continue
		}
		// Checked first: adding an export of a cluster that does not
		// answer would hold ganesha's D-Bus thread (and every other
		// export change) for libcephfs's mount timeout.
		callCtx, cancel := context.WithTimeout(ctx, time.Minute)
		err = clusterAnswers(callCtx)
		cancel()
		if err != nil {
			logger.V(2).Info("CephFS exports wait for the cluster", "exports", len(remote), "err", err)
			continue
		}
		for _, e := range remote {
			if err := exports.Add(ctx, e); err != nil {
				// Once per export and error: a volume deleted while we were
				// away fails until reconciliation drops its export.
				if reported[e.ID] != err.Error() {
					logger.Error(err, "Could not serve a CephFS export again; retrying", "exportID", e.ID, "pseudo", e.Pseudo)
					reported[e.ID] = err.Error()
				}
				continue
			}
			delete(reported, e.ID)
			logger.Info("Serving a CephFS export again", "exportID", e.ID, "pseudo", e.Pseudo)
		}
	}
}
