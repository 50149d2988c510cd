// Command provisioner is a dynamic NFS volume provisioner for Kubernetes with
// an embedded NFS-Ganesha server. It takes the upstream nfs-provisioner
// image's flags; see flags.go. This file only wires the parts together.
//
// The order of start-up is the point: the NFS server starts first and serves
// every export persisted in the store before the API server is asked
// anything, so a restart during an API outage does not interrupt NFS
// service. Only provisioning waits for the API server, and for a first
// reconciliation with the PVs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"

	"github.com/nfs-provisioner/nfs-provisioner/internal/exepages"
	"github.com/nfs-provisioner/nfs-provisioner/internal/idletrim"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/health"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage/cephfs"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage/directory"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage/fsimage"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
)

func main() {
	var o options
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(fs)
	o.register(fs)
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background())
	if err := run(ctx, &o); err != nil {
		klog.ErrorS(err, "Provisioner failed")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	klog.Flush()
}

func run(ctx context.Context, o *options) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.failover.enabled {
		return runFailover(ctx, o)
	}
	return serve(ctx, o, nil)
}

// serve runs the store: its NFS server, then provisioning. t is nil for a
// single store, and the term of the active replica with -failover.
func serve(ctx context.Context, o *options, t *term) error {
	logger := klog.FromContext(ctx)

	// The store, its lock and its volumes: local, no API server needed.
	if err := os.MkdirAll(o.exportDir, 0o755); err != nil {
		return fmt.Errorf("export dir: %w", err)
	}
	dirs, err := directory.New(o.exportDir)
	if err != nil {
		return err
	}
	state, err := volume.OpenState(dirs.Root())
	if err != nil {
		return err
	}
	lock, err := state.Lock()
	if err != nil {
		return err
	}
	defer lock.Close()
	backends := []storage.Backend{dirs}
	images, err := fsimage.New(ctx, fsimage.Options{
		ImageDir: filepath.Join(state.Dir(), "images"),
		MountDir: filepath.Join(state.Dir(), "mounts"),
	})
	if err != nil {
		return err
	}
	backends = append(backends, images)
	ceph, err := cephfs.New(cephfs.Options{Conf: o.cephConf, Keyring: o.cephKeyring, User: o.cephUser, Filesystem: o.cephFS, Group: o.cephGroup})
	if err != nil {
		return err
	}
	backends = append(backends, ceph)
	if t != nil {
		// The state is on CephFS and moves between replicas; only CephFS
		// volumes move with it.
		backends = []storage.Backend{notOffered{dirs, "-failover"}, ceph}
	}
	logVolumeKinds(ctx, backends, dirs.Root())
	// Filesystem volumes that were open are mounted again before ganesha
	// serves their exports.
	if n, err := images.Reopen(ctx); err != nil {
		logger.Error(err, "Some filesystem volumes could not be opened again; reconciliation reports them", "opened", n)
	} else if n > 0 {
		logger.Info("Opened filesystem volumes again", "volumes", n)
	}

	// The data plane: serves what the store says, before anything else.
	// Failover: the API server is there (the Lease was won through it), and
	// ganesha's node ID is the store's identity, so that comes first.
	var client kubernetes.Interface
	var identity string
	resolveIdentity := func() (string, error) {
		return untilAPI(ctx, "resolve the store's identity", func(ctx context.Context) (string, error) {
			return volume.ResolveIdentity(ctx, state, client, backends)
		})
	}
	var failoverCfg ganesha.Config
	obs := newObservability()
	if t != nil {
		obs, client = t.obs, t.client
		if identity, err = resolveIdentity(); err != nil {
			return err
		}
		failoverCfg = t.ganeshaFailover(o, identity)
	}
	exporter, alive, stopServer, err := startNFS(ctx, o, state.Dir(), ceph.Conf(), failoverCfg, obs)
	if err != nil {
		return err
	}
	defer stopServer()
	m, managed := exporter.(*ganesha.ExportManager)
	if managed && ceph.Configured() {
		go m.ServeRemote(ctx, 10*time.Second, ceph.Serving)
	}

	if t != nil {
		// A replica that took over serves CephFS exports only, added over
		// D-Bus after ganesha started: it is ready once they are all
		// served, so that no client is sent to it before its file handles
		// resolve (NFS4ERR_STALE otherwise).
		ready := alive
		if managed {
			ready = func() error {
				if err := alive(); err != nil {
					return err
				}
				left, err := m.UnservedRemote(ctx)
				if err == nil && len(left) > 0 {
					err = fmt.Errorf("%d CephFS exports not served yet", len(left))
				}
				return err
			}
		}
		t.gate.serving(ready)
		logger.Info("Took over: serving", "takeover", time.Since(t.started), "identity", identity)
	} else if o.httpAddress != "" {
		// Ready means NFS is served: a Service routes clients to ready pods
		// only, so readiness must not wait for the API server.
		if err := health.Serve(ctx, o.httpAddress, obs.handler([]health.Check{alive}, []health.Check{alive})); err != nil {
			return err
		}
	}

	// The control plane: waits for the API server as long as it takes.
	if t == nil {
		if client, err = kubeClient(o); err != nil {
			return err
		}
		if identity, err = resolveIdentity(); err != nil {
			return err
		}
	}
	server, err := untilAPI(ctx, "find the NFS server address for PVs", func(ctx context.Context) (string, error) {
		return volume.ServerAddress(ctx, client, volume.ServerAddressSource{
			Hostname:     o.serverHostname,
			ServiceName:  os.Getenv("SERVICE_NAME"),
			PodNamespace: os.Getenv("POD_NAMESPACE"),
			PodIP:        os.Getenv("POD_IP"),
		})
	})
	if err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(0)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "nfs-provisioner"})

	// Memory a burst grew to is given back once the provisioner is idle.
	trimmer := idletrim.New(idleTrimAfter, nil, func() { idletrim.GiveBack(ctx) })
	go trimmer.Run(ctx)
	prov, err := volume.New(volume.Options{
		Identity:    identity,
		Backends:    backends,
		State:       state,
		Exporter:    exporter,
		Server:      server,
		Clients:     o.exportClients,
		MaxExports:  o.maxExports,
		Overcommit:  o.overcommit,
		IntentGrace: o.intentGrace,
		Client:      client,
		Recorder:    recorder,
		Observer:    touchingObserver{Observer: obs.metrics, touch: trimmer.Touch},
	})
	if err != nil {
		return err
	}
	informers := newInformers(client, prov.Trigger)
	informers.Start(ctx.Done())
	go prov.RunReconciler(ctx, o.reconcileInterval)
	logger.Info("Serving; provisioning starts after the first reconciliation", "provisioner", o.provisioner, "exportDir", dirs.Root(),
		"server", server, "identity", identity)
	// The library drops a claim that ShouldProvision turns away until the
	// claim changes, so the controller starts only once there has been a
	// reconciliation pass.
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		return prov.Reconciled(), nil
	}); err != nil {
		logger.Info("Shutting down before the first reconciliation")
		return nil
	}
	logger.Info("Ready to provision")
	// Start-up is over: the pages of code and read-only data that only
	// initialisation used (about 7 MB; docs/performance.md) need not stay
	// mapped until memory pressure comes.
	if n, err := exepages.Release(); err != nil {
		logger.Info("Could not give back the executable's start-up pages", "err", err.Error())
	} else {
		logger.V(2).Info("Gave back the executable's start-up pages", "bytes", n)
	}
	// What start-up allocated is given back once it has been idle.
	trimmer.Touch()
	// Expansion runs beside provisioning, on the same caches; it is stopped
	// before the NFS server, so no growth is cut short.
	stopResizer, err := startResizer(ctx, client, informers.factory, prov, recorder, o.provisioner)
	if err != nil {
		return err
	}
	defer stopResizer()

	if err := obs.watch(ctx, o, prov, storeUsage(dirs, images)); err != nil {
		return err
	}
	newController := func(inf *sharedInformers) *controller.ProvisionController {
		return controller.NewProvisionController(logger, client, o.provisioner, prov, append(obs.controllerOptions(inf),
			controller.LeaderElection(false), // runElected does it; see there
			controller.Threadiness(o.threads),
			controller.ProvisionTimeout(o.provisionTimeout),
			controller.DeletionTimeout(o.deletionTimeout),
			// A bad claim is retried with backoff and reported each time; this
			// keeps the retries from going on for ever.
			controller.FailedProvisionThreshold(10),
		)...)
	}
	if !o.leaderElect || t != nil { // a failover replica serves only while it leads
		newController(informers).Run(ctx)
	} else {
		// Losing the lease pauses provisioning, never NFS service: ganesha
		// runs outside the election, and a new term gets a new controller
		// (the library's cannot be run twice).
		for ctx.Err() == nil {
			if err := runElected(ctx, client, o.provisioner, podNamespace(), func(ctx context.Context) {
				// Each term's controller gets caches of its own: the library
				// adds an indexer to its claim informer, which an informer
				// that served an earlier term refuses.
				inf := newInformers(client, func() {})
				c := newController(inf)
				inf.Start(ctx.Done())
				c.Run(ctx)
			}); err != nil {
				return err
			}
			if ctx.Err() == nil {
				logger.Info("Provisioning paused until this process leads again; NFS service goes on")
			}
		}
	}
	logger.Info("Shutting down")
	return nil
}

// untilAPI retries f, which needs the API server, until it succeeds, ctx
// ends, or it fails for a reason that retrying cannot fix. NFS service is up
// meanwhile.
func untilAPI[T any](ctx context.Context, what string, f func(context.Context) (T, error)) (T, error) {
	var out T
	var last error
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		v, err := f(callCtx)
		if err == nil {
			out = v
			return true, nil
		}
		if !retriable(err) {
			return false, err
		}
		if last == nil || last.Error() != err.Error() {
			klog.FromContext(ctx).Error(err, "Waiting for the API server; NFS service goes on meanwhile", "to", what)
		}
		last = err
		return false, nil
	})
	if err != nil && last != nil && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%s: %w (last: %v)", what, err, last)
	}
	return out, err
}

// retriable tells an API server that is away, slow or overloaded from an
// answer that retrying cannot change.
func retriable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var urlErr *url.Error // no answer at all: refused, reset, timed out
	if errors.As(err, &urlErr) {
		return true
	}
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}

// logVolumeKinds says at start which volume kinds this process can make,
// and warns when directory volumes share a filesystem with anything else.
func logVolumeKinds(ctx context.Context, backends []storage.Backend, root string) {
	logger := klog.FromContext(ctx)
	for _, b := range backends {
		for _, k := range b.Kinds() {
			if err := b.Available(); err != nil {
				logger.Info("Volume kind unavailable; claims for it get an event", "kind", k, "reason", err.Error())
				continue
			}
			logger.Info("Volume kind available", "kind", k)
		}
	}
	if own, err := directory.OwnFilesystem(root); err != nil {
		logger.Error(err, "Could not tell whether the export dir is a filesystem of its own")
	} else if !own {
		logger.Error(nil, "WARNING: the export dir is not a filesystem of its own. Directory volumes on it are one trust domain with everything else on that filesystem: an NFS client that forges file handles can reach any of it, the node's own files included. Give the store its own filesystem, or use filesystem volumes (fsType).", "exportDir", root)
	}
}

// startNFS starts the embedded ganesha, or with -run-server=false connects to
// one managed elsewhere. It returns the export manager, a liveness check and
// a stop function.
func startNFS(ctx context.Context, o *options, stateDir, cephConf string, failoverCfg ganesha.Config, obs *observability) (volume.Exporter, health.Check, func(), error) {
	ganeshaDir := filepath.Join(stateDir, "ganesha")
	if !o.runServer {
		bus := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
		if bus == "" {
			bus = "unix:path=/run/dbus/system_bus_socket"
		}
		m, err := ganesha.ConnectExportManager(bus, ganeshaDir)
		if err != nil {
			return nil, nil, nil, err
		}
		return m, func() error { return nil }, func() {}, nil
	}
	runtimeDir := o.runtimeDir
	if runtimeDir == "" {
		runtimeDir = ganesha.DefaultRuntimeDir(ganeshaDir)
	}
	srv, err := ganesha.NewServer(obs.ganeshaConfig(ganesha.Config{
		StateDir:    ganeshaDir,
		RuntimeDir:  runtimeDir,
		BindAddress: o.bindAddress,
		NFSPort:     o.nfsPort,
		MountdPort:  o.mountdPort,
		NFSv3:       o.useNFSv3,
		GracePeriod: o.gracePeriod,
		CephConf:    cephConf,
		Recovery:    failoverCfg.Recovery,
		ServerScope: failoverCfg.ServerScope,
	}))
	if err != nil {
		return nil, nil, nil, err
	}
	obs.server = srv
	if err := srv.Start(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("start NFS-Ganesha: %w", err)
	}
	stop := func() {
		// The signal context is done by now; stopping needs a fresh one.
		stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Stop(stopCtx); err != nil {
			klog.ErrorS(err, "Stopping NFS-Ganesha")
		}
	}
	return srv.Exports(), srv.Healthy, stop, nil
}

func kubeClient(o *options) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if o.kubeconfig != "" || o.master != "" {
		cfg, err = clientcmd.BuildConfigFromFlags(o.master, o.kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.QPS = float32(o.kubeAPIQPS)
	cfg.Burst = o.kubeAPIBurst
	cfg.UserAgent = "nfs-provisioner"
	// A frozen API server must not hold a call for ever.
	cfg.Timeout = 60 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}

// podNamespace is where the leader-election Lease lives: POD_NAMESPACE, else
// the ServiceAccount's namespace, else "default", as the library chooses.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(data)); ns != "" {
			return ns
		}
	}
	return "default"
}
