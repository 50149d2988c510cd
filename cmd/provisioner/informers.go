package main

import (
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"
)

// lastApplied is kubectl's copy of an applied object; often the largest
// annotation, and nobody here reads it.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// sharedInformers are the only caches of claims, volumes and classes in the
// process: one factory, shared by the library's controller, the expansion
// controller and the reconciler, whose objects are trimmed before they are
// stored.
type sharedInformers struct {
	factory informers.SharedInformerFactory
}

// newInformers makes the factory, with the library's resync period (a claim
// the library dropped is looked at again then at the latest). onPVChange is
// called whenever a PV is added, changed or deleted, so that the reconciler
// acts at once rather than at its next interval.
func newInformers(client kubernetes.Interface, onPVChange func()) *sharedInformers {
	s := &sharedInformers{factory: informers.NewSharedInformerFactoryWithOptions(client, controller.DefaultResyncPeriod,
		informers.WithTransform(trimObject))}
	_, _ = s.factory.Core().V1().PersistentVolumes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { onPVChange() },
		UpdateFunc: func(old, cur any) {
			// Resyncs change nothing reconciliation reads.
			if o, ok := old.(*v1.PersistentVolume); ok {
				if c, ok := cur.(*v1.PersistentVolume); ok && o.ResourceVersion == c.ResourceVersion {
					return
				}
			}
			onPVChange()
		},
		DeleteFunc: func(any) { onPVChange() },
	})
	return s
}

// controllerOptions hand the informers to the ProvisionController. The
// library does not start informers it was given; it waits for them to sync.
func (s *sharedInformers) controllerOptions() []func(*controller.ProvisionController) error {
	return []func(*controller.ProvisionController) error{
		controller.ClaimsInformer(s.factory.Core().V1().PersistentVolumeClaims().Informer()),
		controller.VolumesInformer(s.factory.Core().V1().PersistentVolumes().Informer()),
		controller.ClassesInformer(s.factory.Storage().V1().StorageClasses().Informer()),
	}
}

// Start runs the informers made so far until stop is closed.
func (s *sharedInformers) Start(stop <-chan struct{}) { s.factory.Start(stop) }

// trimObject drops what neither the library nor the provisioner reads.
//
// managedFields go from every object: they are often half of it, and an
// object sent back with nil managedFields (the library's Update of a claim
// in rescheduleProvisioning) leaves the server's untouched.
//
// Claims keep everything else, annotations included: the library may send
// a cached claim back whole with Update, which would delete on the server
// whatever the cache lacks. Volumes lose kubectl's last-applied copy too:
// the library only ever patches them with a diff of the cached object and
// a copy of it, which leaves fields that both lack alone. Classes are read
// only.
func trimObject(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.PersistentVolumeClaim:
		o.ManagedFields = nil
	case *v1.PersistentVolume:
		o.ManagedFields = nil
		delete(o.Annotations, lastApplied)
	case *storagev1.StorageClass:
		o.ManagedFields = nil
		delete(o.Annotations, lastApplied)
	}
	return obj, nil
}
