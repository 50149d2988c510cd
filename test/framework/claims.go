package framework

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// WaitBound waits until claim namespace/name is Bound and returns its PV.
// A claim that does not exist yet is waited for too: a StatefulSet makes its
// claims a moment after its pods. It gives up when ctx ends.
func WaitBound(ctx context.Context, client kubernetes.Interface, namespace, name string) (*corev1.PersistentVolume, error) {
	for {
		pvc, err := client.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil && pvc.Status.Phase == corev1.ClaimBound:
			return client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		case err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil:
			return nil, fmt.Errorf("claim %s/%s: %w", namespace, name, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("claim %s/%s not Bound: %w", namespace, name, ctx.Err())
		case <-time.After(PollInterval):
		}
	}
}
