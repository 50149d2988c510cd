package main

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/failover"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/health"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// runFailover runs one replica of an active/passive pair over CephFS.
//
// Passive: no NFS server, not ready, waiting for the Lease. On winning it,
// in this order: fence (evict, with blocklisting, every CephFS session of
// the store's servers, so a predecessor that is frozen rather than dead can
// neither read nor write when it wakes), mount the store's state from
// CephFS, then serve as a single-store provisioner would, ganesha presenting
// the same server as its predecessor (pinned node ID, scope, RADOS recovery
// database). The active never hands the store back: once it cannot renew
// the Lease within the renew deadline it exits at once, and its children
// die with it, so that it stops serving before the Lease expires for the
// others. A clean stop (SIGTERM) stops ganesha first and releases the Lease
// after.
func runFailover(ctx context.Context, o *options) error {
	logger := klog.FromContext(ctx)
	f := o.failover
	client, err := kubeClient(o)
	if err != nil {
		return err
	}
	ceph := failover.Ceph{Conf: o.cephConf, Keyring: o.cephKeyring, User: o.cephUser, FS: o.cephFS}
	holder := string(uuid.NewUUID())
	obs := newObservability()
	gate := &servingGate{renewDeadline: f.renewDeadline}
	if o.httpAddress != "" {
		if err := health.Serve(ctx, o.httpAddress, obs.handler(nil, []health.Check{gate.ready})); err != nil {
			return err
		}
	}
	// Known before the Lease is won, so that none of the takeover's time
	// goes to it.
	statePath, err := untilAPI(ctx, "find the state subvolume", func(ctx context.Context) (string, error) {
		return ceph.SubvolumePath(ctx, f.stateSubvolume, "")
	})
	if ctx.Err() != nil {
		return nil // stopped while starting: nothing served, nothing to undo
	}
	if err != nil {
		return err
	}
	ranks, err := untilAPI(ctx, "find the MDS ranks", ceph.Ranks)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	lock, err := newLeaseLock(client, o.provisioner, podNamespace())
	if err != nil {
		return err
	}
	lock = &renewClock{Interface: lock, gate: gate}
	logger.Info("Passive: waiting for the Lease", "lease", podNamespace()+"/"+lock.Describe(), "stateSubvolume", statePath)

	// While passive, the store's sessions are listed now and then, so
	// that the fence can start evicting before its own listing.
	var known atomic.Pointer[[]failover.Session]
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for {
			if ss, err := ceph.Sessions(watchCtx, ranks); err == nil {
				known.Store(&ss)
			}
			select {
			case <-watchCtx.Done():
				return
			case <-time.After(sessionWatchInterval):
			}
		}
	}()

	// The election outlives ctx (a SIGTERM) until ganesha has stopped: the
	// Lease is released only after serving ended.
	electCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	var leading atomic.Bool
	go func() {
		// A passive replica has nothing to stop first.
		<-ctx.Done()
		if !leading.Load() {
			stopElection()
		}
	}()
	var result error
	var once sync.Once
	leaderelection.RunOrDie(electCtx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   f.leaseDuration,
		RenewDeadline:   f.renewDeadline,
		RetryPeriod:     f.retryPeriod,
		ReleaseOnCancel: true,
		Name:            o.provisioner,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				leading.Store(true)
				defer stopElection()
				serveCtx, cancel := context.WithCancel(ctx)
				defer cancel()
				go func() {
					select {
					case <-leadCtx.Done():
						// The watchdog has exited the process by now, or is about to.
						cancel()
					case <-serveCtx.Done():
					}
				}()
				go gate.watchdog(serveCtx)
				stopWatch()
				var seen []failover.Session
				if k := known.Load(); k != nil {
					seen = *k
				}
				result = takeOver(serveCtx, o, client, ceph, ranks, seen, holder, statePath, gate, obs)
			},
			OnStoppedLeading: func() {
				once.Do(func() { logger.Info("Not leading any more") })
			},
		},
	})
	if result == nil && ctx.Err() == nil {
		result = errors.New("lost the Lease")
	}
	return result
}

// sessionWatchInterval is how often a passive replica lists the CephFS
// sessions: one ceph CLI call each time.
const sessionWatchInterval = 10 * time.Second

// takeOver fences, mounts the state and serves until ctx ends.
func takeOver(ctx context.Context, o *options, client kubernetes.Interface, ceph failover.Ceph, ranks []int, seen []failover.Session, holder, statePath string,
	gate *servingGate, obs *observability) error {
	logger := klog.FromContext(ctx)
	t0 := time.Now()
	logger.Info("Won the Lease: fencing the store's other servers before serving")
	scope := failover.Scope{Paths: []string{statePath, path.Join("/volumes", o.cephGroup)}, Self: holder}
	evicted, err := failover.Fence(ctx, ceph, scope, ranks, seen)
	if err != nil {
		return fmt.Errorf("fence: %w (nothing is served without it)", err)
	}
	tFence := time.Now()
	m, err := failover.StartMount(ctx, failover.MountSpec{
		Ceph: ceph, Root: statePath, Mountpoint: o.exportDir, Holder: holder,
		LogFile: filepath.Join(runtimeDirOf(o), "ceph-fuse.log"),
		OnLost: func(err error) {
			// Without its state the store may not be served another moment.
			klog.ErrorS(err, "The state mount is gone: exiting now")
			klog.FlushAndExit(klog.ExitFlushTimeout, 1)
		},
	})
	if err != nil {
		return err
	}
	defer m.Close()
	logger.Info("Fenced and mounted; starting to serve", "evictedSessions", len(evicted),
		"fence", tFence.Sub(t0), "mount", time.Since(tFence))
	return serve(ctx, o, &term{client: client, gate: gate, obs: obs, started: t0})
}

// term is what a failover replica hands the single-store code path when
// it takes over: the API client it already has, the readiness gate it
// serves, and the metrics registry.
type term struct {
	client  kubernetes.Interface
	gate    *servingGate
	obs     *observability
	started time.Time
}

// ganeshaFailover is ganesha's part of presenting the same server as the
// predecessor: recovery records in RADOS under a node ID, and scope/owner,
// all derived from the store's identity, which both replicas read from the
// shared state.
func (t *term) ganeshaFailover(o *options, identity string) ganesha.Config {
	return ganesha.Config{
		Recovery: &ganesha.RADOSRecovery{
			CephConf: o.cephConf, UserID: o.cephUser, Pool: o.failover.radosPool,
			Namespace: identity, NodeID: identity,
		},
		ServerScope: identity,
	}
}

// runtimeDirOf is where run-time files of this replica go: never on CephFS.
func runtimeDirOf(o *options) string {
	if o.runtimeDir != "" {
		return o.runtimeDir
	}
	return ganesha.DefaultRuntimeDir(filepath.Join(o.exportDir, ".nfs-provisioner", "ganesha"))
}

// servingGate is readiness in failover mode: ready only while this replica
// serves and has renewed its Lease within the renew deadline. A replica
// that was frozen is not ready the moment it wakes.
type servingGate struct {
	renewDeadline time.Duration
	lastRenew     atomic.Int64 // unix nanoseconds of the last successful renewal
	alive         atomic.Pointer[health.Check]
}

func (g *servingGate) renewed(at time.Time) { g.lastRenew.Store(at.UnixNano()) }

func (g *servingGate) sinceRenew() time.Duration {
	last := g.lastRenew.Load()
	if last == 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Since(time.Unix(0, last))
}

// serving is called once ganesha serves.
func (g *servingGate) serving(alive health.Check) { g.alive.Store(&alive) }

func (g *servingGate) ready() error {
	a := g.alive.Load()
	if a == nil {
		return errors.New("passive: not serving")
	}
	if d := g.sinceRenew(); d > g.renewDeadline {
		return fmt.Errorf("the Lease was last renewed %s ago", d.Round(time.Millisecond))
	}
	return (*a)()
}

// watchdog exits the process as soon as the Lease has gone unrenewed for
// the renew deadline: the others may take over once it expires, and by then
// this replica must serve nothing. Exiting is the fastest stop: ganesha,
// its D-Bus daemon and ceph-fuse are killed with the process (Pdeathsig).
// After a freeze (SIGSTOP, a paused VM) this fires on the first tick.
func (g *servingGate) watchdog(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d := g.sinceRenew(); d > g.renewDeadline {
			klog.ErrorS(nil, "The Lease was not renewed within the renew deadline; another replica may take over: exiting now, and everything this replica serves with it",
				"sinceRenew", d.Round(time.Millisecond), "renewDeadline", g.renewDeadline)
			klog.FlushAndExit(klog.ExitFlushTimeout, 1)
		}
	}
}

// renewClock records every successful write of the Lease (acquire and
// renew) in the gate.
type renewClock struct {
	resourcelock.Interface
	gate *servingGate
}

func (r *renewClock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	// The time the write was sent: no other replica can have seen the
	// record earlier, so none counts its expiry from an earlier moment.
	at := time.Now()
	err := r.Interface.Create(ctx, ler)
	if err == nil {
		r.gate.renewed(at)
	}
	return err
}

func (r *renewClock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	at := time.Now()
	err := r.Interface.Update(ctx, ler)
	if err == nil && ler.HolderIdentity == r.Identity() {
		r.gate.renewed(at)
	}
	return err
}

// notOffered is a backend whose volumes are not made in this mode: claims
// for its kinds get an event saying why. Its existing volumes are still
// listed, so nothing of theirs is taken for a leftover.
type notOffered struct {
	storage.Backend
	mode string
}

func (n notOffered) Available() error {
	return fmt.Errorf("not offered with %s: only CephFS volumes move with the state between replicas", n.mode)
}
