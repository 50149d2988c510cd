package volume

import (
	"fmt"
	"sync/atomic"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"
)

// Options configure a Provisioner. Store, Exporter, Identity, Server and
// Client are required.
type Options struct {
	// Name is the provisioner name that StorageClasses name, e.g. example.com/nfs.
	Name string
	// Identity names the store; PVs made from another store are not touched.
	Identity string
	Store    *Store
	Exporter Exporter
	// Server is the NFS server address written into PVs.
	Server string
	// Clients restricts every export to these clients (the -export-subnet);
	// empty or "*" means any client.
	Clients []string
	// MaxExports caps the number of volumes; negative means no cap.
	MaxExports int
	Client     kubernetes.Interface
	// Recorder receives events about PVs found wrong at reconciliation; nil
	// means log only.
	Recorder record.EventRecorder
	// Clock names archives; the real clock when nil.
	Clock clock.PassiveClock
}

// Provisioner makes and removes NFS volumes. Create it with New, call
// Reconcile once, then hand it to the library's ProvisionController.
type Provisioner struct {
	opts       Options
	reg        *registry
	locks      keyedMutex
	reconciled atomic.Bool
}

var (
	_ controller.Provisioner   = (*Provisioner)(nil)
	_ controller.Qualifier     = (*Provisioner)(nil)
	_ controller.DeletionGuard = (*Provisioner)(nil)
)

// New checks the options and returns a Provisioner.
func New(opts Options) (*Provisioner, error) {
	switch {
	case opts.Name == "":
		return nil, fmt.Errorf("provisioner name is empty")
	case opts.Identity == "":
		return nil, fmt.Errorf("store identity is empty")
	case opts.Store == nil:
		return nil, fmt.Errorf("no store")
	case opts.Exporter == nil:
		return nil, fmt.Errorf("no exporter")
	case opts.Server == "":
		return nil, fmt.Errorf("no NFS server address for PVs")
	case opts.Client == nil:
		return nil, fmt.Errorf("no Kubernetes client")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Provisioner{opts: opts, reg: newRegistry()}, nil
}

// Reconciled reports whether start-up reconciliation has finished, which is
// when the provisioner is ready to serve.
func (p *Provisioner) Reconciled() bool { return p.reconciled.Load() }
