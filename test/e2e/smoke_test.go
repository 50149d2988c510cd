package e2e

// Smoke tests of the test bed itself: the real PV controller and StatefulSet
// controller do what the provisioner's tests rely on, and a ServiceAccount
// config is held to RBAC.

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

const (
	smokeProvisioner = "example.com/nfs"
	// annStorageProvisioner is what the PV controller sets on a claim whose
	// class names an external provisioner; the provisioner acts on it.
	annStorageProvisioner = "volume.kubernetes.io/storage-provisioner"
	smokeTimeout          = 30 * time.Second
)

// TestSmokeClaimIsAnnotatedForProvisioner: a PVC of a class with an external
// provisioner gets the storage-provisioner annotation from the PV controller.
func TestSmokeClaimIsAnnotatedForProvisioner(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	ctx := t.Context()
	class := createStorageClass(t, c, ns)

	pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, newClaim("claim", class), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PVC: %v", err)
	}
	var got *corev1.PersistentVolumeClaim
	framework.Eventually(t, smokeTimeout, "PVC "+pvc.Name+" annotated with "+annStorageProvisioner, func() (bool, error) {
		got, err = c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvc.Name, metav1.GetOptions{})
		return err == nil && got.Annotations[annStorageProvisioner] != "", err
	})
	if p := got.Annotations[annStorageProvisioner]; p != smokeProvisioner {
		t.Errorf("PVC annotation %s = %q, want %q", annStorageProvisioner, p, smokeProvisioner)
	}
	// Nobody provisions example.com/nfs, so the claim must still wait.
	if got.Status.Phase != corev1.ClaimPending {
		t.Errorf("PVC phase = %s, want %s", got.Status.Phase, corev1.ClaimPending)
	}
}

// TestSmokeStatefulSetCreatesClaims: the StatefulSet controller creates one
// PVC per replica from volumeClaimTemplates, and they are annotated too.
func TestSmokeStatefulSetCreatesClaims(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	ctx := t.Context()
	class := createStorageClass(t, c, ns)

	const replicas = 3
	labels := map[string]string{"app": "smoke"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			// Parallel: with OrderedReady the controller waits for pod 0
			// to be Ready before it creates pod 1 and its claim, and
			// without a kubelet no pod ever is.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:         "app",
					Image:        "registry.invalid/never-pulled:0", // no kubelet runs it
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{*newClaim("data", class)},
		},
	}
	if _, err := c.Client.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StatefulSet: %v", err)
	}
	for i := range replicas {
		name := fmt.Sprintf("data-web-%d", i) // <template>-<statefulset>-<ordinal>
		var pvc *corev1.PersistentVolumeClaim
		framework.Eventually(t, smokeTimeout, "StatefulSet claim "+name+" annotated by the PV controller", func() (bool, error) {
			var err error
			pvc, err = c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil && pvc.Annotations[annStorageProvisioner] != "", err
		})
		if got := ptr.Deref(pvc.Spec.StorageClassName, ""); got != class {
			t.Errorf("PVC %s storageClassName = %q, want %q", name, got, class)
		}
		if got := pvc.Annotations[annStorageProvisioner]; got != smokeProvisioner {
			t.Errorf("PVC %s annotation %s = %q, want %q", name, annStorageProvisioner, got, smokeProvisioner)
		}
		if pvc.Labels["app"] != "smoke" {
			t.Errorf("PVC %s labels = %v, want the pod template's app=smoke", name, pvc.Labels)
		}
	}
}

// TestSmokePreboundVolumeBindsClaim: a hand-made PV whose claimRef names a
// claim is bound to it by the PV controller.
func TestSmokePreboundVolumeBindsClaim(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	ctx := t.Context()
	class := createStorageClass(t, c, ns)

	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke-" + ns},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              class,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: "claim"},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				NFS: &corev1.NFSVolumeSource{Server: "127.0.0.1", Path: "/export/smoke"},
			},
		},
	}
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PV: %v", err)
	}
	t.Cleanup(func() {
		deleteIgnoringNotFound(t, "PV "+pv.Name, c.Client.CoreV1().PersistentVolumes().Delete, pv.Name)
	})
	// Create the claim only once the PV controller has seen the volume:
	// a claim it syncs first finds no match, and is then only retried at
	// the 15 s resync (--pvclaimbinder-sync-period).
	framework.Eventually(t, smokeTimeout, "PV "+pv.Name+" Available", func() (bool, error) {
		got, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.VolumeAvailable, err
	})
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, newClaim("claim", class), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PVC: %v", err)
	}

	framework.Eventually(t, smokeTimeout, "PVC claim Bound to PV "+pv.Name, func() (bool, error) {
		pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "claim", metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName == pv.Name, err
	})
	got, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get PV: %v", err)
	}
	if got.Status.Phase != corev1.VolumeBound {
		t.Errorf("PV phase = %s, want %s", got.Status.Phase, corev1.VolumeBound)
	}
	if got.Spec.ClaimRef == nil || got.Spec.ClaimRef.UID == "" {
		t.Errorf("PV claimRef = %+v, want it completed with the claim's UID", got.Spec.ClaimRef)
	}
}

// TestSmokeServiceAccountIsNotAdmin: a ServiceAccount config has no rights
// until RBAC grants them, and then only those.
func TestSmokeServiceAccountIsNotAdmin(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	ctx := t.Context()

	cfg, err := c.ServiceAccountConfig(ctx, ns, "smoke")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	if want := "system:serviceaccount:" + ns + ":smoke"; review.Status.UserInfo.Username != want {
		t.Fatalf("authenticated as %q, want %q", review.Status.UserInfo.Username, want)
	}
	if _, err := sa.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing PVs without RBAC: err = %v, want Forbidden", err)
	}

	name := "smoke-pv-reader-" + ns
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list"},
		}},
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ClusterRole: %v", err)
	}
	t.Cleanup(func() { deleteIgnoringNotFound(t, "ClusterRole "+name, c.Client.RbacV1().ClusterRoles().Delete, name) })
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "smoke"}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ClusterRoleBinding: %v", err)
	}
	t.Cleanup(func() {
		deleteIgnoringNotFound(t, "ClusterRoleBinding "+name, c.Client.RbacV1().ClusterRoleBindings().Delete, name)
	})

	// The RBAC authorizer learns of the binding through an informer.
	framework.Eventually(t, 10*time.Second, "the ServiceAccount allowed to list PVs", func() (bool, error) {
		_, err := sa.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) {
			return false, nil
		}
		return err == nil, err
	})
	// Still not admin: the role grants nothing else.
	if _, err := sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing secrets in kube-system: err = %v, want Forbidden", err)
	}
	if err := sa.CoreV1().PersistentVolumes().Delete(ctx, "anything", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("deleting a PV: err = %v, want Forbidden", err)
	}
}

// createStorageClass makes a class for example.com/nfs named after the
// test's namespace: classes are cluster-scoped and other tests in the
// package make their own.
func createStorageClass(t *testing.T, c *framework.Cluster, ns string) string {
	t.Helper()
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: "smoke-" + ns},
		Provisioner:       smokeProvisioner,
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
	if _, err := c.Client.StorageV1().StorageClasses().Create(t.Context(), sc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StorageClass: %v", err)
	}
	t.Cleanup(func() {
		deleteIgnoringNotFound(t, "StorageClass "+sc.Name, c.Client.StorageV1().StorageClasses().Delete, sc.Name)
	})
	return sc.Name
}

func newClaim(name, class string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			},
		},
	}
}

// deleteIgnoringNotFound runs in cleanups, where t.Context() is canceled.
func deleteIgnoringNotFound(t *testing.T, what string, del func(context.Context, string, metav1.DeleteOptions) error, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := del(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete %s: %v", what, err)
	}
}
