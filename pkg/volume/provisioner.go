package volume

import (
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Options configure a Provisioner. Identity, Backends (one of them for
// directory volumes), State, Exporter, Server and Client are required.
type Options struct {
	// Identity names the store; PVs made from another store are not touched.
	Identity string
	// Backends keep the volumes; each kind is made by exactly one.
	Backends []storage.Backend
	// State is the store's ledger of owners, export ID mark and leftovers.
	State    *State
	Exporter Exporter
	// Server is the NFS server address written into PVs.
	Server string
	// Clients restricts every export to these clients (the -export-subnet);
	// empty or "*" means any client.
	Clients []string
	// MaxExports caps the number of volumes; negative means no cap.
	MaxExports int
	// Overcommit is how many times the store's size the sizes of filesystem
	// volumes may add up to. Default 1: no overcommit.
	Overcommit float64
	// IntentGrace is how long an unfinished provision may wait for its PV
	// before reconciliation may remove what it made, when its claim is gone
	// or bound elsewhere. Default 10 minutes: longer than any API request.
	IntentGrace time.Duration
	Client      kubernetes.Interface
	// Recorder receives events on claims and PVs; nil means log only.
	Recorder record.EventRecorder
	// Observer is told of every operation and reconciliation; nil: none.
	Observer Observer
	// Clock names archives and ages intents; the real clock when nil.
	Clock clock.PassiveClock
}

// Provisioner makes and removes NFS volumes. Create it with New, start
// RunReconciler, then hand it to the library's ProvisionController.
type Provisioner struct {
	opts     Options
	backends map[storage.Kind]storage.Backend
	reg      *registry
	locks    keyedMutex
	// gate lets reconciliation see the registry, the exports and the store
	// hold still: operations share it, a reconciliation pass takes it alone.
	gate sync.RWMutex
	// busy counts the operations that hold the gate or wait for it.
	busy       atomic.Int32
	reconciled atomic.Bool
	// room serialises the capacity check and the promise of new filesystem
	// volumes, so concurrent claims cannot together overshoot the store.
	room    sync.Mutex
	pending int64 // bytes promised to filesystem volumes being created
	// deleted holds PVs whose Delete finished while their object may still
	// be there; reconciliation leaves them alone.
	deleted sync.Map
	// handedOver holds volumes (name -> time) returned in a PV that the
	// library may not have saved yet: until a PV naming them is seen, they
	// are in flight, and their exports are not strays.
	handedOver sync.Map
	// trigger asks the reconciler for a pass soon.
	trigger chan struct{}
	// volumes is what the last reconciliation pass saw, for metrics.
	volumes atomic.Pointer[[]VolumeInfo]
}

var (
	_ controller.Provisioner   = (*Provisioner)(nil)
	_ controller.Qualifier     = (*Provisioner)(nil)
	_ controller.DeletionGuard = (*Provisioner)(nil)
)

// New checks the options and returns a Provisioner.
func New(opts Options) (*Provisioner, error) {
	switch {
	case opts.Identity == "":
		return nil, fmt.Errorf("store identity is empty")
	case opts.State == nil:
		return nil, fmt.Errorf("no state dir")
	case opts.Exporter == nil:
		return nil, fmt.Errorf("no exporter")
	case opts.Server == "":
		return nil, fmt.Errorf("no NFS server address for PVs")
	case opts.Client == nil:
		return nil, fmt.Errorf("no Kubernetes client")
	case opts.Overcommit < 0:
		return nil, fmt.Errorf("overcommit %g is negative", opts.Overcommit)
	}
	backends := map[storage.Kind]storage.Backend{}
	for _, b := range opts.Backends {
		for _, k := range b.Kinds() {
			if _, dup := backends[k]; dup {
				return nil, fmt.Errorf("two backends make %s volumes", k)
			}
			backends[k] = b
		}
	}
	if backends[storage.Directory] == nil {
		return nil, fmt.Errorf("no backend for directory volumes")
	}
	if opts.Overcommit == 0 {
		opts.Overcommit = 1
	}
	if opts.IntentGrace == 0 {
		opts.IntentGrace = 10 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	mark, err := opts.State.ExportIDMark()
	if err != nil {
		return nil, err
	}
	return &Provisioner{
		opts:     opts,
		backends: backends,
		reg:      newRegistry(mark, opts.State.SetExportIDMark),
		trigger:  make(chan struct{}, 1),
	}, nil
}

// share takes the gate for an operation; the caller calls release when
// done.
func (p *Provisioner) share() (release func()) {
	p.busy.Add(1)
	p.gate.RLock()
	return func() {
		p.gate.RUnlock()
		p.busy.Add(-1)
	}
}

// Reconciled reports whether a reconciliation pass has finished since start,
// which is when the provisioner takes new claims.
func (p *Provisioner) Reconciled() bool { return p.reconciled.Load() }

// Owns reports whether pv was made from this provisioner's store.
func (p *Provisioner) Owns(pv *v1.PersistentVolume) bool {
	return pv.Annotations[AnnIdentity] == p.opts.Identity
}

// backend is the backend of kind, or an error that says why there is none.
func (p *Provisioner) backend(kind storage.Kind) (storage.Backend, error) {
	b, ok := p.backends[kind]
	if !ok {
		return nil, fmt.Errorf("%w: %s volumes are not made by this provisioner (it makes %s)", storage.ErrUnavailable, kind, kindsOf(p.backends))
	}
	if err := b.Available(); err != nil {
		return nil, fmt.Errorf("%s volumes cannot be made here: %w", kind, err)
	}
	return b, nil
}

// observe reports one operation to the observer.
func (p *Provisioner) observe(op Operation, start time.Time, err error) {
	p.opts.Observer.Operation(op, time.Since(start), err)
}

// kindsOf lists the kinds backends make, for messages.
func kindsOf(backends map[storage.Kind]storage.Backend) string {
	var kinds []string
	for k := range backends {
		kinds = append(kinds, string(k))
	}
	slices.Sort(kinds)
	return strings.Join(kinds, ", ")
}
