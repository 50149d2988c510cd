package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// runElected runs lead once this process holds the Lease of provisioner
// name in namespace, and returns when ctx ends or the lease is lost.
//
// The library can elect a leader itself, but it exits the process with
// klog.FlushAndExit when leadership ends, which is also what a SIGTERM does;
// ganesha then never gets its graceful shutdown. Here losing the lease only
// cancels lead's context, and run returns to stop ganesha properly. The
// Lease name and timings are the library's, so upgrades across the two
// styles keep one lock.
func runElected(ctx context.Context, client kubernetes.Interface, name, namespace string, lead func(context.Context)) error {
	lock, err := newLeaseLock(client, name, namespace)
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true, // a clean stop hands over at once
		Name:            name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				logger.Info("Became the leader", "lease", namespace+"/"+lock.Describe())
				lead(ctx)
			},
			OnStoppedLeading: func() {
				logger.Info("Stopped leading")
				cancel()
			},
		},
	})
	return nil
}

// newLeaseLock is the Lease of provisioner name in namespace, held under a
// new identity: the host name and a UUID.
func newLeaseLock(client kubernetes.Interface, name, namespace string) (resourcelock.Interface, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("leader election identity: %w", err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, strings.ReplaceAll(name, "/", "-"),
		client.CoreV1(), client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())})
	if err != nil {
		return nil, fmt.Errorf("leader election lock: %w", err)
	}
	return lock, nil
}
