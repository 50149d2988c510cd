package framework

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Namespace creates a fresh namespace for the test, named after it, and
// deletes it on cleanup. If the test failed, the namespace's events are
// logged first: they say what the controllers did and did not do.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: namespacePrefix(t.Name())},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("framework: create namespace: %v", err)
	}
	name := ns.Name
	t.Cleanup(func() {
		// t.Context() is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if t.Failed() {
			c.logEvents(ctx, t, name)
		}
		// Not waiting for the namespace controller to finish: nothing
		// depends on it, and it would add seconds to every test.
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("framework: delete namespace %s: %v", name, err)
		}
	})
	return name
}

func (c *Cluster) logEvents(ctx context.Context, t testing.TB, ns string) {
	events, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("framework: list events in %s: %v", ns, err)
		return
	}
	var b strings.Builder
	for _, e := range events.Items {
		b.WriteString("\n  " + e.Type + " " + e.InvolvedObject.Kind + "/" + e.InvolvedObject.Name + " " + e.Reason + ": " + e.Message)
	}
	t.Logf("framework: %d events in namespace %s:%s", len(events.Items), ns, b.String())
}

// namespacePrefix turns a test name into a DNS label prefix, leaving room
// for the random suffix the API server appends to a GenerateName.
func namespacePrefix(testName string) string {
	const maxPrefix = 63 - 5 - 1 // the apiserver appends 5 random characters
	var b strings.Builder
	dash := true // no leading dash, no runs of dashes
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	s := b.String()
	if len(s) > maxPrefix {
		s = s[:maxPrefix]
	}
	s = strings.TrimRight(s, "-")
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		s = "t" + s
	}
	return s + "-"
}
