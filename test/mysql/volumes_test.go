package mysql

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }

// volumes carves each pod's datadir the way a cluster would: the real
// provisioner, on the shared control plane, provisions the claim that the
// StatefulSet's volumeClaimTemplates make for the pod, from the shipped
// StorageClass (its parameters as shipped; only its name and provisioner
// name are this test's own, since both are cluster-wide).
type volumes struct {
	cluster   *framework.Cluster
	namespace string
	template  corev1.PersistentVolumeClaim
	exportDir string
}

func newVolumes(t *testing.T, exportDir string) *volumes {
	t.Helper()
	c := framework.Shared(t)
	ns := c.Namespace(t)
	name := "nfs-provisioner/mysql-" + ns
	proc, err := framework.StartProvisioner(t.Context(), &framework.ProvisionerSpec{
		Name: name, Namespace: ns, ExportDir: exportDir, Kubeconfig: c.Kubeconfig,
		LogFile: filepath.Join(t.TempDir(), "provisioner.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(framework.DefaultStopGrace); err != nil {
			t.Errorf("stop provisioner: %v", err)
		}
	})

	sc := shippedStorageClass(t)
	sc.Name, sc.Provisioner = ns+"-"+sc.Name, name
	if _, err := c.Client.StorageV1().StorageClasses().Create(t.Context(), sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})

	sts := loadManifest(t).statefulSet
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("the StatefulSet has %d volumeClaimTemplates, want 1", len(sts.Spec.VolumeClaimTemplates))
	}
	tmpl := *sts.Spec.VolumeClaimTemplates[0].DeepCopy()
	tmpl.Spec.StorageClassName = &sc.Name
	return &volumes{cluster: c, namespace: ns, template: tmpl, exportDir: exportDir}
}

func shippedStorageClass(t *testing.T) *storagev1.StorageClass {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(manifestPath(t)), "storageclass.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sc storagev1.StorageClass
	if err := yaml.Unmarshal(raw, &sc); err != nil {
		t.Fatalf("deploy/storageclass.yaml: %v", err)
	}
	return &sc
}

// claim provisions the claim <template>-<pod> and returns its directory in
// the store: the pod's datadir.
func (v *volumes) claim(t *testing.T, pod string) string {
	t.Helper()
	pvc := v.template.DeepCopy()
	pvc.Name, pvc.Namespace = v.template.Name+"-"+pod, v.namespace
	if _, err := v.cluster.Client.CoreV1().PersistentVolumeClaims(v.namespace).Create(t.Context(), pvc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	pv, err := framework.WaitBound(ctx, v.cluster.Client, v.namespace, pvc.Name)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(v.exportDir, pv.Annotations[volume.AnnDirectory])
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("the volume of %s is not a directory in the store: %v", pvc.Name, err)
	}
	return dir
}
