//go:build image

package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// shipped is what `kubectl kustomize deploy/` renders: the provisioner's pod
// template and the class.
type shipped struct {
	pod   v1.PodSpec
	class storagev1.StorageClass
}

func renderShipped(t testing.TB) shipped {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "kustomize", filepath.Join(wd, "..", "..", "deploy")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/: %v", err)
	}
	var s shipped
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		switch u.GetKind() {
		case "StatefulSet":
			var sts appsv1.StatefulSet
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &sts); err != nil {
				t.Fatal(err)
			}
			s.pod = sts.Spec.Template.Spec
		case "StorageClass":
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &s.class); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(s.pod.Containers) != 1 || s.class.Name == "" {
		t.Fatalf("deploy/ renders %d containers and class %q", len(s.pod.Containers), s.class.Name)
	}
	return s
}

// podmanSecurity turns the container's securityContext and volumes into
// podman options, the way a CRI runtime applies them: capabilities dropped
// and added, a read-only root with tmpfs for each emptyDir, no new
// privileges, the runtime's default seccomp profile.
func podmanSecurity(t testing.TB, pod v1.PodSpec) (caps []string, opts []string) {
	t.Helper()
	ctr := pod.Containers[0]
	sc := ctr.SecurityContext
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []v1.Capability{"ALL"}) {
		t.Fatalf("securityContext %+v: want capabilities dropped to none and added back", sc)
	}
	for _, c := range sc.Capabilities.Add {
		caps = append(caps, string(c))
	}
	if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != v1.SeccompProfileTypeRuntimeDefault {
		t.Fatal("the pod does not ask for the RuntimeDefault seccomp profile")
	}
	// podman's default profile is the runtime default; nothing to add.
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Fatal("allowPrivilegeEscalation is not false")
	}
	opts = append(opts, "--security-opt", "no-new-privileges")
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Fatal("readOnlyRootFilesystem is not true")
	}
	opts = append(opts, "--read-only", "--read-only-tmpfs=false")
	for _, m := range ctr.VolumeMounts {
		for _, vol := range pod.Volumes {
			if vol.Name == m.Name && vol.EmptyDir != nil {
				opts = append(opts, "--tmpfs", m.MountPath)
			}
		}
	}
	return caps, opts
}

// shippedRun starts the image as the shipped pod runs it, with caps as its
// capabilities, and returns the container and its store.
func shippedRun(t testing.TB, c *framework.Cluster, ns string, s shipped, caps []string) (*container, string) {
	t.Helper()
	image := imageName(t)
	gw, subnet := bridge(t)
	kubeconfig := apiKubeconfig(t, c, gw)
	_, opts := podmanSecurity(t, s.pod)
	var args []string
	for _, a := range s.pod.Containers[0].Args {
		if !strings.HasPrefix(a, "-provisioner=") {
			args = append(args, a)
		}
	}
	// The test's own provisioner name and API access; SERVICE_NAME is left
	// out, so the PVs name the container's address.
	args = append(args, "-provisioner=example.com/"+ns, "-kubeconfig=/etc/nfs-provisioner/kubeconfig")
	export := t.TempDir()
	ctr := runContainer(t, containerSpec{
		Image: image, IP: containerIP(t, subnet), ExportDir: export, Caps: caps,
		Extra: append(opts, "--env", "POD_NAMESPACE="+ns, "--volume", kubeconfig+":/etc/nfs-provisioner/kubeconfig:ro"),
		Args:  args,
	})
	return ctr, export
}

// waitServing waits until the pod's probes pass, or the container exits.
func waitServing(t testing.TB, ctr *container, pod v1.PodSpec) error {
	t.Helper()
	probe := pod.Containers[0].ReadinessProbe
	if probe == nil || probe.HTTPGet == nil {
		t.Fatal("no readiness probe")
	}
	url := fmt.Sprintf("http://%s:8080%s", ctr.ip, probe.HTTPGet.Path)
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if body, err := httpGet(t.Context(), url); err == nil && strings.TrimSpace(body) == "ok" {
			return nil
		}
		if !ctr.running(t.Context()) {
			return fmt.Errorf("the container exited before it was ready:\n%s", tail(ctr.logs(t), 15))
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("%s not ok after 90s", url)
}

func shippedClass(t testing.TB, c *framework.Cluster, ns string, s shipped, suffix string, params map[string]string) string {
	t.Helper()
	class := s.class.DeepCopy()
	class.ObjectMeta = metav1.ObjectMeta{Name: ns + suffix}
	class.Provisioner = "example.com/" + ns
	class.Parameters = params
	if _, err := c.Client.StorageV1().StorageClasses().Create(t.Context(), class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.StorageV1().StorageClasses().Delete(context.Background(), class.Name, metav1.DeleteOptions{})
	})
	return class.Name
}

func waitBound(t testing.TB, c *framework.Cluster, ns, name string) *v1.PersistentVolume {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	pv, err := framework.WaitBound(ctx, c.Client, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return pv
}

// TestImageUnderShippedSecurityContext runs the image under exactly the
// securityContext, volumes, args and probes of deploy/ (read from the
// rendered manifests): every capability dropped and only the listed ones
// added, read-only root with the emptyDirs as tmpfs, no new privileges,
// RuntimeDefault seccomp. Everything the data path does works: the probes
// pass, claims of the shipped class (uid/gid 999, 0770, root squashed) and of
// a root class with setgid mode are Bound, clients write as 999, as root and
// as another user, over v3 and v4; a deleted claim's data is removed; SIGTERM
// stops everything cleanly.
func TestImageUnderShippedSecurityContext(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	s := renderShipped(t)
	caps, _ := podmanSecurity(t, s.pod)
	ctr, export := shippedRun(t, c, ns, s, caps)
	if err := waitServing(t, ctr, s.pod); err != nil {
		t.Fatal(err)
	}
	if body, err := httpGet(t.Context(), fmt.Sprintf("http://%s:8080%s", ctr.ip, s.pod.Containers[0].LivenessProbe.HTTPGet.Path)); err != nil || strings.TrimSpace(body) != "ok" {
		t.Errorf("liveness probe: %q, %v", body, err)
	}

	db := shippedClass(t, c, ns, s, "-db", s.class.Parameters)
	open := shippedClass(t, c, ns, s, "-open", map[string]string{"mode": "2775", "gid": "1000"})
	createClaim(t, c, ns, "db", db)
	createClaim(t, c, ns, "open", open)
	pvDB, pvOpen := waitBound(t, c, ns, "db"), waitBound(t, c, ns, "open")

	target := func(pv *v1.PersistentVolume, version int, uid uint32) nfsclient.Target {
		return nfsclient.Target{Host: ctr.ip.String(), NFSPort: 2049, MountPort: 20048, Pseudo: pv.Spec.NFS.Path, Version: version, UID: uid, GID: uid}
	}
	for _, w := range []struct {
		tg   nfsclient.Target
		name string
	}{
		{target(pvDB, 3, 999), "db-v3"}, {target(pvDB, 4, 999), "db-v4"},
		{target(pvOpen, 3, 0), "root-v3"}, {target(pvOpen, 4, 1000), "user-v4"},
	} {
		if err := nfsclient.WriteFile(t.Context(), w.tg, w.name, []byte(w.name+"\n")); err != nil {
			t.Errorf("write %s as uid %d: %v", w.name, w.tg.UID, err)
		}
	}
	if err := nfsclient.WriteFile(t.Context(), target(pvDB, 3, 0), "root", []byte("x")); err == nil {
		t.Error("client root wrote into the shipped class's volume: root squash not in effect")
	}
	// setgid mode kept on a directory of another group (FSETID).
	openDir, _ := filepath.Glob(filepath.Join(export, "*"+pvOpen.Name+"*"))
	if len(openDir) != 1 {
		t.Fatalf("volume directory of %s: %v", pvOpen.Name, openDir)
	}
	if fi, err := os.Stat(openDir[0]); err != nil || fi.Mode()&os.ModeSetgid == 0 {
		t.Errorf("%s: mode %v, %v; want setgid from mode 2775", openDir[0], fi.Mode(), err)
	}

	// Deleting the claim removes the data of uid 999, mode 0770 (DAC_OVERRIDE).
	if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 60*time.Second, "PV "+pvDB.Name+" deleted", func() (bool, error) {
		_, err := c.Client.CoreV1().PersistentVolumes().Get(t.Context(), pvDB.Name, metav1.GetOptions{})
		return err != nil, nil
	})

	start := time.Now()
	if _, err := podman(t.Context(), "kill", "--signal", "TERM", ctr.name); err != nil {
		t.Fatal(err)
	}
	code, err := ctr.wait(t.Context(), stopBound+30*time.Second)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	logs := ctr.logs(t)
	if code != 0 || took > stopBound || strings.Contains(logs, "sending SIGKILL") || !strings.Contains(logs, "NFS server stopped") {
		t.Errorf("SIGTERM: exit %d after %s; want 0, every child stopped by SIGTERM:\n%s", code, took, tail(logs, 20))
	}
	t.Logf("capabilities %v, read-only root, probes ok, 4 writes, delete, SIGTERM to exit %s", caps, took.Round(time.Millisecond))
}

// TestImageEachShippedCapabilityNeeded removes one added capability at a
// time and shows what breaks, so none of them is there by habit.
func TestImageEachShippedCapabilityNeeded(t *testing.T) {
	c := framework.Shared(t)
	s := renderShipped(t)
	caps, _ := podmanSecurity(t, s.pod)
	// How each missing capability shows, from the cheapest observation.
	fails := map[string]func(t *testing.T, ns string, ctr *container) error{
		// Checked at start, before ready.
		"DAC_READ_SEARCH":  exitsWith("missing capability DAC_READ_SEARCH"),
		"NET_BIND_SERVICE": exitsWith("rpcbind"),
		"SETUID":           exitsWith("rpcbind"),
		"SETGID":           exitsWith("rpcbind"),
		// Provisioning a class with an owner: chown, then chmod of a
		// directory no longer root's.
		"CHOWN":  provisionFails(s, nil),
		"FOWNER": provisionFails(s, nil),
		// Mode 2770 for a group the provisioner is not in: chmod would
		// drop the setgid bit; the directory is checked.
		"FSETID": setgidDropped(s),
		// The volume of uid 999, mode 0770, cannot be removed.
		"DAC_OVERRIDE": deleteFails(s),
		// rpcbind runs as _rpc: SIGTERM to it is refused, the stop escalates.
		"KILL": stopEscalates,
	}
	for _, drop := range caps {
		check, ok := fails[drop]
		if !ok {
			t.Errorf("capability %s is added by deploy/ but no test shows it is needed", drop)
			continue
		}
		t.Run(drop, func(t *testing.T) {
			ns := c.Namespace(t)
			ctr, _ := shippedRun(t, c, ns, s, slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == drop }))
			if err := check(t, ns, ctr); err != nil {
				t.Fatalf("without %s: %v", drop, err)
			}
		})
	}
}

func exitsWith(want string) func(t *testing.T, ns string, ctr *container) error {
	return func(t *testing.T, ns string, ctr *container) error {
		code, err := ctr.wait(t.Context(), 90*time.Second)
		if err != nil {
			return fmt.Errorf("still running: %w", err)
		}
		logs := ctr.logs(t)
		if code == 0 || !strings.Contains(logs, want) || strings.Contains(logs, "Ready to provision") {
			return fmt.Errorf("exit %d; want a failure naming %q before ready:\n%s", code, want, tail(logs, 10))
		}
		t.Logf("exit %d: %s", code, lastLine(grep(logs, want)))
		return nil
	}
}

// provisionFails: a claim of the shipped class gets a ProvisioningFailed
// event and stays Pending.
func provisionFails(s shipped, _ []string) func(t *testing.T, ns string, ctr *container) error {
	return func(t *testing.T, ns string, ctr *container) error {
		c := framework.Shared(t)
		if err := waitServing(t, ctr, s.pod); err != nil {
			return err
		}
		createClaim(t, c, ns, "data", shippedClass(t, c, ns, s, "", s.class.Parameters))
		return waitEvent(t, c, ns, "data", "ProvisioningFailed")
	}
}

func setgidDropped(s shipped) func(t *testing.T, ns string, ctr *container) error {
	return func(t *testing.T, ns string, ctr *container) error {
		c := framework.Shared(t)
		if err := waitServing(t, ctr, s.pod); err != nil {
			return err
		}
		createClaim(t, c, ns, "data", shippedClass(t, c, ns, s, "", map[string]string{"mode": "2770", "gid": "999"}))
		// Either provisioning notices, or the directory lacks the bit.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		pv, err := framework.WaitBound(ctx, c.Client, ns, "data")
		if err != nil {
			return waitEvent(t, c, ns, "data", "ProvisioningFailed")
		}
		exp, err := podman(t.Context(), "inspect", "--format", "{{range .Mounts}}{{if eq .Destination \"/export\"}}{{.Source}}{{end}}{{end}}", ctr.name)
		if err != nil {
			return err
		}
		dirs, _ := filepath.Glob(filepath.Join(exp, "*"+pv.Name+"*"))
		if len(dirs) != 1 {
			return fmt.Errorf("volume directory of %s: %v", pv.Name, dirs)
		}
		fi, err := os.Stat(dirs[0])
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSetgid != 0 {
			return fmt.Errorf("%s kept setgid (%v) without FSETID", dirs[0], fi.Mode())
		}
		t.Logf("mode 2770 asked, %v made: the setgid bit is silently lost", fi.Mode())
		return nil
	}
}

func deleteFails(s shipped) func(t *testing.T, ns string, ctr *container) error {
	return func(t *testing.T, ns string, ctr *container) error {
		c := framework.Shared(t)
		if err := waitServing(t, ctr, s.pod); err != nil {
			return err
		}
		createClaim(t, c, ns, "data", shippedClass(t, c, ns, s, "", s.class.Parameters))
		pv := waitBound(t, c, ns, "data")
		tg := nfsclient.Target{Host: ctr.ip.String(), NFSPort: 2049, MountPort: 20048, Pseudo: pv.Spec.NFS.Path, Version: 3, UID: 999, GID: 999}
		if err := nfsclient.WriteFile(t.Context(), tg, "f", []byte("x")); err != nil {
			return fmt.Errorf("write as 999: %w", err)
		}
		if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), "data", metav1.DeleteOptions{}); err != nil {
			return err
		}
		return waitEvent(t, c, "default", pv.Name, "VolumeFailedDelete")
	}
}

func stopEscalates(t *testing.T, ns string, ctr *container) error {
	if err := waitServing(t, ctr, renderShipped(t).pod); err != nil {
		return err
	}
	if _, err := podman(t.Context(), "kill", "--signal", "TERM", ctr.name); err != nil {
		return err
	}
	if _, err := ctr.wait(t.Context(), stopBound); err != nil {
		t.Logf("SIGTERM did not stop the container within %s (the kubelet would SIGKILL it): %v", stopBound, err)
		return nil
	}
	if logs := ctr.logs(t); !strings.Contains(logs, "sending SIGKILL") {
		return fmt.Errorf("every child stopped on SIGTERM:\n%s", tail(logs, 10))
	}
	return nil
}

// waitEvent waits for an event of reason on the object name in ns.
func waitEvent(t testing.TB, c *framework.Cluster, ns, name, reason string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		events, err := c.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Reason == reason {
				t.Logf("%s on %s: %s", reason, name, e.Message)
				return nil
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("no %s event on %s/%s within 60s", reason, ns, name)
}
