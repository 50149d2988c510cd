// Command provisioner is a dynamic NFS volume provisioner for Kubernetes with
// an embedded NFS-Ganesha server. It takes the upstream nfs-provisioner
// image's flags; see flags.go. This file only wires the parts together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/health"
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
	logger := klog.FromContext(ctx)

	if err := os.MkdirAll(o.exportDir, 0o755); err != nil {
		return fmt.Errorf("export dir: %w", err)
	}
	store, err := volume.NewStore(o.exportDir)
	if err != nil {
		return err
	}
	stateDir, err := volume.StateDir(store.Root())
	if err != nil {
		return err
	}
	lock, err := volume.LockStateDir(stateDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	identity, err := volume.LoadIdentity(stateDir)
	if err != nil {
		return err
	}

	client, err := kubeClient(o)
	if err != nil {
		return err
	}
	server, err := volume.ServerAddress(ctx, client, volume.ServerAddressSource{
		Hostname:     o.serverHostname,
		ServiceName:  os.Getenv("SERVICE_NAME"),
		PodNamespace: os.Getenv("POD_NAMESPACE"),
		PodIP:        os.Getenv("POD_IP"),
	})
	if err != nil {
		return err
	}

	obs := newObservability()
	exporter, alive, stopServer, err := startNFS(ctx, o, stateDir, obs)
	if err != nil {
		return err
	}
	defer stopServer()

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(0)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "nfs-provisioner"})

	prov, err := volume.New(volume.Options{
		Name:       o.provisioner,
		Identity:   identity,
		Store:      store,
		Exporter:   exporter,
		Server:     server,
		Clients:    o.exportClients,
		MaxExports: o.maxExports,
		Client:     client,
		Recorder:   recorder,
	})
	if err != nil {
		return err
	}

	if o.httpAddress != "" {
		ready := func() error {
			if !prov.Reconciled() {
				return errors.New("start-up reconciliation has not finished")
			}
			return nil
		}
		if err := health.Serve(ctx, o.httpAddress, obs.handler([]health.Check{alive}, []health.Check{alive, ready})); err != nil {
			return err
		}
	}

	start := time.Now()
	if _, err := prov.Reconcile(ctx); err != nil {
		return fmt.Errorf("start-up reconciliation: %w", err)
	}
	logger.Info("Ready to provision", "provisioner", o.provisioner, "exportDir", store.Root(), "server", server,
		"identity", identity, "reconcileDuration", time.Since(start).Round(time.Millisecond))

	if err := obs.watch(ctx, o, prov, store.Root()); err != nil {
		return err
	}
	inf := newInformers(client)
	ctrl := controller.NewProvisionController(logger, client, o.provisioner, prov, append(obs.controllerOptions(inf),
		controller.LeaderElection(false), // runElected does it; see there
		controller.Threadiness(o.threads),
		// A bad claim is retried with backoff and reported each time; this
		// keeps the retries from going on for ever.
		controller.FailedProvisionThreshold(10),
	)...)
	inf.start(ctx)
	if o.leaderElect {
		err = runElected(ctx, client, o.provisioner, podNamespace(), ctrl.Run)
	} else {
		ctrl.Run(ctx)
	}
	logger.Info("Shutting down")
	return err
}

// startNFS starts the embedded ganesha, or with -run-server=false connects to
// one managed elsewhere. It returns the export manager, a liveness check and
// a stop function.
func startNFS(ctx context.Context, o *options, stateDir string, obs *observability) (volume.Exporter, health.Check, func(), error) {
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
	srv, err := ganesha.NewServer(obs.ganeshaConfig(ganesha.Config{
		StateDir:    ganeshaDir,
		BindAddress: o.bindAddress,
		NFSPort:     o.nfsPort,
		MountdPort:  o.mountdPort,
		NFSv3:       o.useNFSv3,
		GracePeriod: o.gracePeriod,
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
