package main

import (
	"context"
	"sync"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/resize"
)

// startResizer runs the expansion controller of our claims (pkg/resize)
// with the shared informer factory, which it starts. The returned function
// stops it and waits until it has, so that no expansion is cut short by the
// NFS server stopping; call it before that. A nil expander leaves expansion
// off, with a log line.
func startResizer(ctx context.Context, client kubernetes.Interface, factory informers.SharedInformerFactory,
	expander resize.Expander, recorder record.EventRecorder, provisioner string) (func(), error) {
	if expander == nil {
		klog.FromContext(ctx).Info("Volume expansion is off: the provisioner cannot expand volumes", "provisioner", provisioner)
		return func() {}, nil
	}
	ctrl, err := resize.New(resize.Options{
		Provisioner: provisioner,
		Expander:    expander,
		Client:      client,
		Informers:   factory,
		Recorder:    recorder,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	factory.Start(ctx.Done())
	var wg sync.WaitGroup
	wg.Go(func() { ctrl.Run(ctx) })
	return func() {
		cancel()
		wg.Wait()
		factory.Shutdown()
	}, nil
}
