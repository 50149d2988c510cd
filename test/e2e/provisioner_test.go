package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// TestClaimLifecycle: a claim becomes a Bound PV; a file written through a
// real NFS client lands in the volume's directory; deleting the claim removes
// the export and, as the class's onDelete says, the directory.
func TestClaimLifecycle(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	p := startProvisioner(t, c, provisionerConfig{Namespace: ns})
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.httpPort, path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
			t.Errorf("GET %s: %s %q", path, resp.Status, body)
		}
	}

	for _, mode := range []volume.OnDelete{volume.OnDeleteDelete, volume.OnDeleteRetain, volume.OnDeleteArchive} {
		t.Run(string(mode), func(t *testing.T) {
			class := ns + "-" + string(mode)
			storageClass(t, c, class, p.cfg.Name, map[string]string{"onDelete": string(mode), "gid": "1234", "mode": "2770"}, v1.PersistentVolumeReclaimDelete)
			name := "data-" + string(mode)
			createClaim(t, c, framework.Claim(ns, name, class, "10Mi", v1.ReadWriteMany))
			pv := waitBound(t, c, ns, name)

			dir := pv.Annotations[volume.AnnDirectory]
			if pv.Spec.NFS == nil || pv.Spec.NFS.Server != "127.0.0.1" || pv.Spec.NFS.Path != "/"+dir {
				t.Fatalf("PV source %+v, directory %q", pv.Spec.NFS, dir)
			}
			if pv.Annotations[volume.AnnVolumeGID] != "1234" {
				t.Errorf("PV lacks %s=1234: %v", volume.AnnVolumeGID, pv.Annotations)
			}
			if !slices.Equal(pv.Spec.MountOptions, []string{"vers=4.1"}) {
				t.Errorf("mount options %v", pv.Spec.MountOptions)
			}
			fi, err := os.Stat(filepath.Join(p.cfg.ExportDir, dir))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o770 || fi.Mode()&os.ModeSetgid == 0 {
				t.Errorf("directory mode %v, want 0770 with setgid", fi.Mode())
			}

			data := []byte(strings.Repeat("nfs-provisioner e2e "+string(mode)+"\n", 4000)) // 100 KB: over v3
			nfsWrite(t, p, pv, "hello.txt", data, 3)
			small := []byte("written over NFSv4\n")
			nfsWrite(t, p, pv, "v4.txt", small, 4)
			got, err := os.ReadFile(filepath.Join(p.cfg.ExportDir, dir, "hello.txt"))
			if err != nil || string(got) != string(data) {
				t.Fatalf("file in the store: %d bytes, err %v; want %d bytes", len(got), err, len(data))
			}
			if back := nfsRead(t, p, pv, "v4.txt", 4); string(back) != string(small) {
				t.Fatalf("read back %q over v4", back)
			}

			if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			waitPVGone(t, c, pv.Name)
			nfsRefused(t, p, pv)
			for _, e := range p.exports(t.Context()) {
				if e.Pseudo == pv.Spec.NFS.Path {
					t.Fatalf("export %d still serves %s", e.ID, e.Pseudo)
				}
			}
			_, errDir := os.Stat(filepath.Join(p.cfg.ExportDir, dir))
			archived, errArch := os.ReadFile(filepath.Join(p.cfg.ExportDir, "archived-"+dir, "hello.txt"))
			switch mode {
			case volume.OnDeleteDelete:
				if !os.IsNotExist(errDir) || errArch == nil {
					t.Errorf("onDelete=delete left data: dir err %v, archive err %v", errDir, errArch)
				}
			case volume.OnDeleteRetain:
				if errDir != nil {
					t.Errorf("onDelete=retain lost the directory: %v", errDir)
				}
			case volume.OnDeleteArchive:
				if !os.IsNotExist(errDir) || string(archived) != string(data) {
					t.Errorf("onDelete=archive: dir err %v, archived file %d bytes, err %v", errDir, len(archived), errArch)
				}
			}
		})
	}
}

// TestStatefulSetClaims: volumeClaimTemplates of our class give every replica
// a Bound volume.
func TestStatefulSetClaims(t *testing.T) {
	env := newTestEnv(t)
	c, ns, p, class := env.c, env.ns, env.p, env.class

	replicas := int32(3)
	labels := map[string]string{"app": "web"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: "web",
			// No kubelet runs here, so no pod ever becomes Ready; Parallel
			// makes the controller create every pod, and so every claim.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: v1.PodSpec{Containers: []v1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10",
					VolumeMounts: []v1.VolumeMount{{Name: "data", MountPath: "/data"}}}}},
			},
			VolumeClaimTemplates: []v1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: v1.PersistentVolumeClaimSpec{
					StorageClassName: &class,
					AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOncePod},
					Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
				},
			}},
		},
	}
	if _, err := c.Client.AppsV1().StatefulSets(ns).Create(t.Context(), sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range int(replicas) {
		pv := waitBound(t, c, ns, fmt.Sprintf("data-web-%d", i))
		if pv.Spec.AccessModes[0] != v1.ReadWriteOncePod {
			t.Errorf("PV %s access modes %v", pv.Name, pv.Spec.AccessModes)
		}
		nfsWrite(t, p, pv, "replica", []byte(strconv.Itoa(i)), 3)
	}
	if n := len(p.exports(t.Context())); n != int(replicas) {
		t.Fatalf("%d exports, want %d", n, replicas)
	}
}

// TestBadInput: every kind of claim or class the provisioner cannot honour
// gets a Warning event naming the problem, no PV, and leaves no directory
// and no export behind.
func TestBadInput(t *testing.T) {
	env := newTestEnv(t, "-max-exports=1")
	c, ns, p, good := env.c, env.ns, env.p, env.class

	block := v1.PersistentVolumeBlock
	cases := []struct {
		name   string
		params map[string]string
		modify func(*v1.PersistentVolumeClaim)
		want   string
	}{
		{name: "unknown-param", params: map[string]string{"archiveOnDelete": "true"}, want: `unknown StorageClass parameter "archiveOnDelete"`},
		{name: "bad-uid", params: map[string]string{"uid": "root"}, want: `uid="root"`},
		{name: "bad-gid", params: map[string]string{"gid": "-5"}, want: `gid="-5"`},
		{name: "bad-mode", params: map[string]string{"mode": "rwx"}, want: `mode="rwx"`},
		{name: "bad-squash", params: map[string]string{"rootSquash": "sometimes"}, want: `rootSquash="sometimes"`},
		{name: "bad-ondelete", params: map[string]string{"onDelete": "shred"}, want: `onDelete="shred"`},
		{name: "block", modify: func(pvc *v1.PersistentVolumeClaim) { pvc.Spec.VolumeMode = &block }, want: "does not support block volume"},
		{name: "selector", modify: func(pvc *v1.PersistentVolumeClaim) {
			pvc.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
		}, want: "selector is not supported"},
		{name: "datasource", modify: func(pvc *v1.PersistentVolumeClaim) {
			pvc.Spec.DataSource = &v1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "other"}
		}, want: "clone source claim"},
		{name: "too-big", modify: func(pvc *v1.PersistentVolumeClaim) {
			pvc.Spec.Resources.Requests[v1.ResourceStorage] = resource.MustParse("1Ei")
		}, want: "the export dir has"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			class := good
			if tc.params != nil {
				class = ns + "-" + tc.name
				storageClass(t, c, class, p.cfg.Name, tc.params, v1.PersistentVolumeReclaimDelete)
			}
			pvc := framework.Claim(ns, tc.name, class, "1Mi")
			if tc.modify != nil {
				tc.modify(pvc)
			}
			createClaim(t, c, pvc)
			msg := warningEvent(t, c, ns, tc.name, tc.want)
			t.Logf("event: %s", msg)
			assertNothingProvisioned(t, c, p, ns, tc.name)
		})
	}

	// -max-exports=1: the first claim is served, the second refused.
	createClaim(t, c, framework.Claim(ns, "first", good, "1Mi"))
	waitBound(t, c, ns, "first")
	createClaim(t, c, framework.Claim(ns, "second", good, "1Mi"))
	warningEvent(t, c, ns, "second", "limit of 1 exports (-max-exports) is reached")
	if dirs := p.volumeDirs(); len(dirs) != 1 {
		t.Fatalf("directories %v, want only the first claim's", dirs)
	}
	if n := len(p.exports(t.Context())); n != 1 {
		t.Fatalf("%d exports, want 1", n)
	}
}

// assertNothingProvisioned checks the claim is still Pending and the store
// has no directory and ganesha no export.
func assertNothingProvisioned(t *testing.T, c *framework.Cluster, p *testProvisioner, ns, name string) {
	t.Helper()
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Status.Phase != v1.ClaimPending || pvc.Spec.VolumeName != "" {
		t.Fatalf("claim is %s with volume %q", pvc.Status.Phase, pvc.Spec.VolumeName)
	}
	if dirs := p.volumeDirs(); len(dirs) != 0 {
		t.Fatalf("left directories: %v", dirs)
	}
	if exports := p.exports(t.Context()); len(exports) != 0 {
		t.Fatalf("left exports: %v", exports)
	}
}

// TestTwoProvisioners: two provisioners with different names, stores and
// ports on one cluster each serve only their own class's claims.
func TestTwoProvisioners(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	a := startProvisioner(t, c, provisionerConfig{Namespace: ns, Name: "example.com/nfs-a-" + ns})
	b := startProvisioner(t, c, provisionerConfig{Namespace: ns, Name: "example.com/nfs-b-" + ns})
	storageClass(t, c, ns+"-a", a.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	storageClass(t, c, ns+"-b", b.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	for i := range 3 {
		createClaim(t, c, framework.Claim(ns, fmt.Sprintf("a-%d", i), ns+"-a", "1Mi"))
		createClaim(t, c, framework.Claim(ns, fmt.Sprintf("b-%d", i), ns+"-b", "1Mi"))
	}
	for i := range 3 {
		for _, side := range []struct {
			prefix string
			p      *testProvisioner
		}{{"a", a}, {"b", b}} {
			pv := waitBound(t, c, ns, fmt.Sprintf("%s-%d", side.prefix, i))
			if got := pv.Annotations["pv.kubernetes.io/provisioned-by"]; got != side.p.cfg.Name {
				t.Errorf("PV of %s-%d provisioned by %q", side.prefix, i, got)
			}
			if _, err := os.Stat(filepath.Join(side.p.cfg.ExportDir, pv.Annotations[volume.AnnDirectory])); err != nil {
				t.Errorf("volume %s-%d is not in its provisioner's store: %v", side.prefix, i, err)
			}
		}
	}
	if na, nb := len(a.exports(t.Context())), len(b.exports(t.Context())); na != 3 || nb != 3 {
		t.Fatalf("exports: a %d, b %d; want 3 each", na, nb)
	}
}

// TestLeaderElection: with -leader-elect the provisioner takes a Lease in
// POD_NAMESPACE and then provisions.
func TestLeaderElection(t *testing.T) {
	env := newTestEnv(t, "-leader-elect=true")
	c, ns, p, class := env.c, env.ns, env.p, env.class
	createClaim(t, c, framework.Claim(ns, "elected", class, "1Mi"))
	waitBound(t, c, ns, "elected")
	leaseName := strings.ReplaceAll(p.cfg.Name, "/", "-")
	lease, err := c.Client.CoordinationV1().Leases(ns).Get(t.Context(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("lease %s/%s: %v", ns, leaseName, err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Fatalf("lease has no holder: %+v", lease.Spec)
	}
	t.Logf("lease %s held by %s", leaseName, *lease.Spec.HolderIdentity)

	// SIGTERM: the lease is handed back and ganesha is stopped gracefully,
	// not abandoned by an exit from inside leader election.
	p.stop()
	if err := p.proc.ExitErr(); err != nil {
		t.Errorf("provisioner exit after SIGTERM: %v", err)
	}
	lease, err = c.Client.CoordinationV1().Leases(ns).Get(t.Context(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("lease still held by %s after a clean stop", *h)
	}
	if !strings.Contains(p.log(), "NFS server stopped") {
		t.Errorf("ganesha was not stopped gracefully:\n%s", p.proc.Tail(20))
	}
}

// TestStartupFailures: flags and environments the provisioner cannot work
// with stop it at once with a message that says what to fix.
func TestStartupFailures(t *testing.T) {
	bin, err := framework.ProvisionerBinary()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := framework.Shared(t).Kubeconfig
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"xfs quota", []string{"-enable-xfs-quota=true"}, "-enable-xfs-quota=true is not supported yet"},
		{"grace", []string{"-grace-period=500"}, "-grace-period=500: want 0 to 180"},
		{"versions", []string{"-nfs-versions=3"}, "NFSv4 cannot be turned off"},
		{"no address", []string{"-export-dir=" + t.TempDir()}, "no NFS server address for PVs"},
		{"unknown flag", []string{"-no-such-flag"}, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"-kubeconfig=" + kubeconfig}, tc.args...)...)
			cmd.Env = filteredEnv("POD_IP", "SERVICE_NAME", "POD_NAMESPACE")
			out, err := runWithTimeout(cmd, 30*time.Second)
			if err == nil {
				t.Fatalf("started with %v:\n%s", tc.args, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}
