package framework

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKubeletStandIn: with the stand-in, the real StatefulSet controller
// walks an OrderedReady StatefulSet through all its replicas; without it,
// only the first pod would ever exist.
func TestKubeletStandIn(t *testing.T) {
	c := Shared(t)
	ns := c.Namespace(t)
	replicas := int32(3)
	labels := map[string]string{"app": "ordered"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ordered"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, ServiceName: "ordered",
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().StatefulSets(ns).Create(t.Context(), sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Without the stand-in the controller stops at ordered-0.
	Eventually(t, 30*time.Second, "pod ordered-0", func() (bool, error) {
		_, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), "ordered-0", metav1.GetOptions{})
		return err == nil, nil
	})
	time.Sleep(time.Second)
	if _, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), "ordered-1", metav1.GetOptions{}); err == nil {
		t.Fatal("ordered-1 exists although ordered-0 was never Ready")
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- KubeletStandIn(ctx, c.Client, ns, "app=ordered") }()
	Eventually(t, 60*time.Second, "3 ready replicas", func() (bool, error) {
		s, err := c.Client.AppsV1().StatefulSets(ns).Get(t.Context(), "ordered", metav1.GetOptions{})
		return err == nil && s.Status.ReadyReplicas == replicas, err
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range int(replicas) {
		pod, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), fmt.Sprintf("ordered-%d", i), metav1.GetOptions{})
		if err != nil || !podReady(pod) {
			t.Fatalf("pod ordered-%d: %v", i, err)
		}
	}
}
