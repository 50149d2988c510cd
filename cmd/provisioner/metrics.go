package main

import (
	"context"
	"net/http"

	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/health"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/metrics"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// observability wires metrics between the parts: made before the NFS
// server (which reports its D-Bus calls to it), told of the server, then
// given the provisioner to read volumes from.
type observability struct {
	metrics *metrics.Metrics
	server  *ganesha.Server // nil with -run-server=false
}

func newObservability() *observability { return &observability{metrics: metrics.New()} }

// ganeshaConfig adds the D-Bus call observer to the embedded server's config.
func (o *observability) ganeshaConfig(c ganesha.Config) ganesha.Config {
	c.BusObserver = o.metrics.BusCall
	return c
}

// handler serves /healthz, /readyz and /metrics on one listener.
func (o *observability) handler(live, ready []health.Check) http.Handler {
	return health.Mux(live, ready, o.metrics.Handler())
}

// watch starts reading volumes, the store and ganesha at every scrape, and
// the directory usage scan when -volume-usage-scan-interval is not 0.
func (o *observability) watch(ctx context.Context, opts *options, volumes metrics.VolumeLister, usage func(context.Context) (storage.Usage, error)) error {
	src := metrics.Sources{
		Volumes:           volumes,
		StoreUsage:        usage,
		UsageScanInterval: opts.usageScanInterval,
		UsageScanRate:     opts.usageScanRate,
	}
	if o.server != nil {
		src.Ganesha = o.server
		// On by default in ganesha; turned back on if someone turned it off.
		if err := o.server.EnableStats(ctx); err != nil {
			return err
		}
	}
	return o.metrics.Watch(ctx, src)
}

// storeUsage is the store's size and free space, with what filesystem
// volumes have been promised.
func storeUsage(dirs, images storage.Backend) func(context.Context) (storage.Usage, error) {
	return func(ctx context.Context) (storage.Usage, error) {
		u, err := dirs.Usage(ctx)
		if err != nil {
			return u, err
		}
		promised, err := images.Usage(ctx)
		u.Allocated = promised.Allocated
		return u, err
	}
}

// controllerOptions make the library count into our registry (and not
// serve a metrics endpoint of its own) and use the shared informers.
func (o *observability) controllerOptions(inf *sharedInformers) []func(*controller.ProvisionController) error {
	return append(inf.controllerOptions(), controller.MetricsInstance(o.metrics.Library()))
}
