package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// helmBinary is the Helm CLI hack/build-helm.sh built (make deps), found by
// the same cache key; $HELM overrides it.
func helmBinary(t testing.TB) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	mod := filepath.Join(filepath.Dir(filepath.Clean(deployPath(t, ""))), "hack", "helm")
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(mod, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	root := os.Getenv("HELM_CACHE")
	if root == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			cache = filepath.Join(os.Getenv("HOME"), ".cache")
		}
		root = filepath.Join(cache, "nfs-provisioner", "helm")
	}
	bin := filepath.Join(root, hex.EncodeToString(h.Sum(nil))[:12], "helm")
	if _, err := os.Stat(filepath.Join(filepath.Dir(bin), ".complete")); err != nil {
		t.Fatalf("helm is not built (%v): run `make deps` or hack/build-helm.sh, or set HELM", err)
	}
	return bin
}

func helm(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	out, err := runWithTimeout(cmd, 2*time.Minute)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func chartPath(t testing.TB) string {
	return filepath.Join(filepath.Dir(filepath.Clean(deployPath(t, ""))), "charts", "nfs-provisioner")
}

// TestHelmLint: the chart passes `helm lint --strict` with its defaults and
// with every optional part turned on.
func TestHelmLint(t *testing.T) {
	for _, set := range [][]string{
		nil,
		{"--set", "filesystemVolumes.enabled=true"},
		{"--set", "store.existingClaim=store", "--set", "metrics.serviceMonitor.enabled=true", "--set", "tolerations[0].operator=Exists"},
	} {
		out := helm(t, append([]string{"lint", "--strict", chartPath(t), "--namespace", shippedNamespace}, set...)...)
		t.Logf("helm lint %v: %s", set, lastNonEmpty(out))
	}
}

// TestHelmMatchesKustomize renders the chart with its defaults and compares
// it with `kubectl kustomize deploy/`: the same objects (kind, namespace,
// name) with the same content, RBAC rules included; the chart may only add
// labels. With filesystemVolumes.enabled it must match deploy/ with
// components/filesystem.
func TestHelmMatchesKustomize(t *testing.T) {
	for _, tc := range []struct {
		component string
		set       []string
	}{
		{"", nil},
		{"filesystem", []string{"--set", "filesystemVolumes.enabled=true"}},
	} {
		t.Run("component="+tc.component, func(t *testing.T) {
			chart := helm(t, append([]string{"template", "nfs-provisioner", chartPath(t), "--namespace", shippedNamespace}, tc.set...)...)
			compareObjects(t, decodeManifest(t, []byte(renderWithComponent(t, tc.component))), decodeManifest(t, []byte(chart)))
		})
	}
}

// TestHelmInstall applies the rendered chart to the control plane (server-
// side dry run, then for real), then installs it with helm itself into a
// namespace made beforehand, and uninstalls it. The StatefulSet controller creating the pod shows the
// template passes admission.
func TestHelmInstall(t *testing.T) {
	c := framework.Shared(t)
	uninstallShipped(t, c)
	t.Cleanup(func() { uninstallShipped(t, c) })
	chart := helm(t, "template", "nfs-provisioner", chartPath(t), "--namespace", shippedNamespace)
	applyNamespacesFirst(t, c.Kubeconfig, "helm template charts/nfs-provisioner", decodeManifest(t, []byte(chart)))
	waitPodCreated(t, c)
	uninstallShipped(t, c)

	// helm keeps its release record in the release namespace, so `helm
	// install` needs it first, labelled as the chart would (README, "Helm").
	if _, err := kubectl(c.Kubeconfig, nil, "create", "namespace", shippedNamespace); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(c.Kubeconfig, nil, "label", "namespace", shippedNamespace, "pod-security.kubernetes.io/enforce=privileged"); err != nil {
		t.Fatal(err)
	}
	helm(t, "install", "nfs-provisioner", chartPath(t), "--namespace", shippedNamespace, "--kubeconfig", c.Kubeconfig, "--set", "namespace.create=false")
	waitPodCreated(t, c)
	if out := helm(t, "status", "nfs-provisioner", "--namespace", shippedNamespace, "--kubeconfig", c.Kubeconfig); !strings.Contains(out, "STATUS: deployed") {
		t.Errorf("helm status:\n%s", out)
	}
	helm(t, "uninstall", "nfs-provisioner", "--namespace", shippedNamespace, "--kubeconfig", c.Kubeconfig)
}

func waitPodCreated(t *testing.T, c *framework.Cluster) {
	t.Helper()
	framework.Eventually(t, 60*time.Second, "pod "+shippedStatefulSet+"-0 created", func() (bool, error) {
		_, err := c.Client.CoreV1().Pods(shippedNamespace).Get(t.Context(), shippedStatefulSet+"-0", metav1.GetOptions{})
		return err == nil, nil
	})
}

// compareObjects fails unless got has exactly want's objects with equal
// content once labels are set aside; want's labels must be among got's.
func compareObjects(t *testing.T, want, got []*unstructured.Unstructured) {
	t.Helper()
	index := func(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			m[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = o
		}
		return m
	}
	w, g := index(want), index(got)
	keys := func(m map[string]*unstructured.Unstructured) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		sort.Strings(k)
		return k
	}
	if !reflect.DeepEqual(keys(w), keys(g)) {
		t.Fatalf("objects differ:\nkustomize %v\nhelm      %v", keys(w), keys(g))
	}
	for _, key := range keys(w) {
		wo, gobj := w[key].DeepCopy(), g[key].DeepCopy()
		for _, path := range [][]string{{"metadata", "labels"}, {"spec", "template", "metadata", "labels"}} {
			wl, _, _ := unstructured.NestedStringMap(wo.Object, path...)
			gl, _, _ := unstructured.NestedStringMap(gobj.Object, path...)
			for k, v := range wl {
				if gl[k] != v {
					t.Errorf("%s: label %s=%q at %v, helm has %q", key, k, v, path, gl[k])
				}
			}
			unstructured.RemoveNestedField(wo.Object, path...)
			unstructured.RemoveNestedField(gobj.Object, path...)
		}
		if !reflect.DeepEqual(wo.Object, gobj.Object) {
			wj, _ := json.MarshalIndent(wo.Object, "", " ")
			gj, _ := json.MarshalIndent(gobj.Object, "", " ")
			t.Errorf("%s differs:\nkustomize: %s\nhelm:      %s", key, wj, gj)
		}
	}
	t.Logf("%d objects, equal up to Helm's labels", len(w))
}

func lastNonEmpty(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return fmt.Sprint(lines[len(lines)-1])
}
