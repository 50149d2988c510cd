package main

import (
	"context"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"
)

// lastApplied is kubectl's copy of an applied object; often the largest
// annotation, and nobody here reads it.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// sharedInformers are the only caches of claims, volumes and classes in the
// process: one factory, handed to the library, whose objects are trimmed
// before they are stored.
type sharedInformers struct {
	factory informers.SharedInformerFactory
}

// newInformers makes the factory. The library's own default is a factory of
// its own per controller with full objects; ours has the same resync
// (controller.DefaultResyncPeriod).
func newInformers(client kubernetes.Interface) *sharedInformers {
	return &sharedInformers{factory: informers.NewSharedInformerFactoryWithOptions(client, controller.DefaultResyncPeriod,
		informers.WithTransform(trimObject))}
}

// controllerOptions hand the informers to the ProvisionController.
func (s *sharedInformers) controllerOptions() []func(*controller.ProvisionController) error {
	return []func(*controller.ProvisionController) error{
		controller.ClaimsInformer(s.factory.Core().V1().PersistentVolumeClaims().Informer()),
		controller.VolumesInformer(s.factory.Core().V1().PersistentVolumes().Informer()),
		controller.ClassesInformer(s.factory.Storage().V1().StorageClasses().Informer()),
	}
}

// start runs the informers until ctx ends. The library does not start
// informers it was given; it waits for them to sync.
func (s *sharedInformers) start(ctx context.Context) { s.factory.Start(ctx.Done()) }

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
