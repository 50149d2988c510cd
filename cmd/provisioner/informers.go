package main

import (
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// sharedInformers are the caches the library's controller and the
// reconciler share, so each object kind is watched once.
type sharedInformers struct {
	factory informers.SharedInformerFactory
	claims  cache.SharedIndexInformer
	volumes cache.SharedIndexInformer
	classes cache.SharedIndexInformer
}

// newInformers makes the shared caches; onPVChange is called whenever a PV
// is added, changed or deleted, so that the reconciler acts at once rather
// than at its next interval.
func newInformers(client kubernetes.Interface, onPVChange func()) *sharedInformers {
	// The library's resync period: a claim dropped by a failed check is
	// looked at again at the latest then.
	f := informers.NewSharedInformerFactory(client, 15*time.Minute)
	s := &sharedInformers{
		factory: f,
		claims:  f.Core().V1().PersistentVolumeClaims().Informer(),
		volumes: f.Core().V1().PersistentVolumes().Informer(),
		classes: f.Storage().V1().StorageClasses().Informer(),
	}
	_, _ = s.volumes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { onPVChange() },
		UpdateFunc: func(old, cur any) {
			// Resyncs and status-only updates change nothing reconciliation reads.
			if o, ok := old.(interface{ GetResourceVersion() string }); ok {
				if c, ok := cur.(interface{ GetResourceVersion() string }); ok && o.GetResourceVersion() == c.GetResourceVersion() {
					return
				}
			}
			onPVChange()
		},
		DeleteFunc: func(any) { onPVChange() },
	})
	return s
}

// Start runs the informers until stop is closed.
func (s *sharedInformers) Start(stop <-chan struct{}) { s.factory.Start(stop) }
