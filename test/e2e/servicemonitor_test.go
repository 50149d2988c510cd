package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// TestHelmServiceMonitor applies the chart's ServiceMonitor to the control
// plane with prometheus-operator's own CRD installed: the API server checks
// it against the operator's schema with strict field validation, so a
// misspelt field or a malformed value fails here rather than in a user's
// cluster. What the schema cannot see is checked too: the ServiceMonitor
// selects the chart's Service in its namespace and names a port of it, and
// that port reaches the container's -http-address, where /metrics is served.
// Copies with a misspelt field, a malformed interval and a number for a
// port name must be refused, which shows the validation is really there.
func TestHelmServiceMonitor(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	installCRD(t, c, "servicemonitors.monitoring.coreos.com", "monitoring.coreos.com_servicemonitors.yaml")

	chart := helm(t, "template", "nfs-provisioner", chartPath(t), "--namespace", ns,
		"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=prometheus")
	var sm, svc, sts *unstructured.Unstructured
	for _, o := range decodeManifest(t, []byte(chart)) {
		switch o.GetKind() {
		case "ServiceMonitor":
			sm = o
		case "Service":
			svc = o
		case "StatefulSet":
			sts = o
		}
	}
	if sm == nil || svc == nil || sts == nil {
		t.Fatalf("the chart with metrics.serviceMonitor.enabled=true renders no ServiceMonitor, Service or StatefulSet:\n%s", chart)
	}
	if sm.GetNamespace() != ns || svc.GetNamespace() != ns {
		t.Errorf("ServiceMonitor in %q and Service in %q, want both in the release namespace %q", sm.GetNamespace(), svc.GetNamespace(), ns)
	}
	if sm.GetLabels()["release"] != "prometheus" {
		t.Errorf("metrics.serviceMonitor.labels not on the ServiceMonitor: %v", sm.GetLabels())
	}

	// The selector picks the Service; with no namespaceSelector the
	// operator looks in the ServiceMonitor's own namespace.
	if _, found, _ := unstructured.NestedFieldNoCopy(sm.Object, "spec", "namespaceSelector"); found {
		t.Errorf("the ServiceMonitor has a namespaceSelector; the Service is in its own namespace")
	}
	selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if len(selector) == 0 {
		t.Fatalf("the ServiceMonitor selects nothing: %v", sm.Object["spec"])
	}
	for k, v := range selector {
		if svc.GetLabels()[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the Service's labels %v lack", k, v, svc.GetLabels())
		}
	}
	// Each endpoint names a Service port, whose target is a named container
	// port on the port the provisioner serves /metrics on.
	svcPorts, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	containers, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "containers")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) == 0 {
		t.Fatal("the ServiceMonitor has no endpoints")
	}
	for _, e := range endpoints {
		ep := e.(map[string]any)
		if ep["path"] != "/metrics" {
			t.Errorf("endpoint path %v, want /metrics", ep["path"])
		}
		target := ""
		for _, p := range svcPorts {
			if p := p.(map[string]any); p["name"] == ep["port"] {
				target, _ = p["targetPort"].(string)
			}
		}
		if target == "" {
			t.Errorf("endpoint port %v is not a named port of the Service (ports %v)", ep["port"], svcPorts)
			continue
		}
		containerPort := ""
		var args []any
		for _, ct := range containers {
			ct := ct.(map[string]any)
			args, _ = ct["args"].([]any)
			ports, _ := ct["ports"].([]any)
			for _, p := range ports {
				if p := p.(map[string]any); p["name"] == target {
					containerPort = jsonString(p["containerPort"])
				}
			}
		}
		if containerPort == "" {
			t.Errorf("the Service's port %v targets %q, which no container port is named", ep["port"], target)
			continue
		}
		if want := "-http-address=:" + containerPort; !containsArg(args, want) {
			t.Errorf("container port %s is %s, but the provisioner's args %v lack %s", target, containerPort, args, want)
		}
	}

	applyDryRunThenReal(t, c.Kubeconfig, "the chart's Service and ServiceMonitor", encodeList(t, []*unstructured.Unstructured{svc, sm}))
	// Stored as rendered: nothing was pruned as unknown.
	out, err := kubectl(c.Kubeconfig, nil, "get", "servicemonitor", "-n", ns, sm.GetName(), "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var stored unstructured.Unstructured
	if err := json.Unmarshal([]byte(out), &stored.Object); err != nil {
		t.Fatal(err)
	}
	if got, want := jsonString(stored.Object["spec"]), jsonString(sm.Object["spec"]); got != want {
		t.Errorf("the API server stored another spec than the chart's:\nstored %s\nchart  %s", got, want)
	}

	for _, bad := range []struct {
		what   string
		field  []string
		value  any
		refuse string // in the API server's answer
	}{
		{"a misspelt field", []string{"intervall"}, "30s", "unknown field"},
		{"a malformed interval", []string{"interval"}, "30 seconds", "spec.endpoints[0].interval"},
		{"a number for the port name", []string{"port"}, int64(8080), "spec.endpoints[0].port"},
	} {
		o := sm.DeepCopy()
		o.SetName(sm.GetName() + "-bad")
		eps, _, _ := unstructured.NestedSlice(o.Object, "spec", "endpoints")
		eps[0].(map[string]any)[bad.field[0]] = bad.value
		if err := unstructured.SetNestedSlice(o.Object, eps, "spec", "endpoints"); err != nil {
			t.Fatal(err)
		}
		out, err := kubectl(c.Kubeconfig, encodeList(t, []*unstructured.Unstructured{o}), "apply", "--server-side", "--dry-run=server", "-f", "-")
		if err == nil {
			t.Errorf("a ServiceMonitor with %s was accepted:\n%s", bad.what, out)
		} else if !strings.Contains(err.Error(), bad.refuse) {
			t.Errorf("a ServiceMonitor with %s was refused, but not for it (want %q): %v", bad.what, bad.refuse, err)
		} else {
			t.Logf("refused as it should be, %s: %s", bad.what, lastNonEmpty(err.Error()))
		}
	}
}

// installCRD applies a CRD manifest of the pinned prometheus-operator
// release (hack/monitoring-crds) and waits until it is established. It is
// deleted, with its objects, when the test ends.
func installCRD(t *testing.T, c *framework.Cluster, name, file string) {
	t.Helper()
	mod := filepath.Join(filepath.Dir(filepath.Clean(deployPath(t, ""))), "hack", "monitoring-crds")
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	out, err := runWithTimeout(cmd, 5*time.Minute)
	if err != nil {
		t.Fatalf("fetch prometheus-operator's CRDs (go mod download in %s): %v\n%s", mod, err, out)
	}
	var dl struct{ Dir, Error string }
	if err := json.Unmarshal([]byte(out), &dl); err != nil || dl.Dir == "" {
		t.Fatalf("go mod download: %v %s\n%s", err, dl.Error, out)
	}
	manifest, err := os.ReadFile(filepath.Join(dl.Dir, "example", "prometheus-operator-crd", file))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = kubectl(c.Kubeconfig, nil, "delete", "crd", name, "--ignore-not-found") })
	if _, err := kubectl(c.Kubeconfig, manifest, "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(c.Kubeconfig, nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/"+name); err != nil {
		t.Fatal(err)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func containsArg(args []any, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}
