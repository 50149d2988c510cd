package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// Issue 13: an unfinished provision (a volume made whose PV was never
// saved) may be removed after -intent-grace, but only when its claim is
// gone; nothing else is ever removed.

// noPVCreateKubeconfig is a kubeconfig whose account may do everything the
// provisioner does except create PVs: its provisions stop after the volume
// is made and before the PV exists, every time, which a kill then freezes.
func noPVCreateKubeconfig(t *testing.T, c *framework.Cluster, ns string) string {
	t.Helper()
	name := "no-pv-create-" + ns
	all := []string{"*"}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "update", "patch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims", "persistentvolumeclaims/status", "events", "endpoints", "services", "nodes", "pods", "configmaps", "namespaces"}, Verbs: all},
			{APIGroups: []string{"storage.k8s.io", "coordination.k8s.io", "events.k8s.io"}, Resources: all, Verbs: all},
		},
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "no-pv-create"}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		_ = c.Client.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{})
	})
	cfg, err := c.ServiceAccountConfig(t.Context(), ns, "no-pv-create")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "no-pv-create.kubeconfig")
	if err := c.WriteKubeconfig(cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUnfinishedProvisionCollectedOnlyWhenClaimGone: the provisioner is
// killed after making two volumes whose PVs were never saved. The claim of
// one is deleted; the other stays. After restarts and past -intent-grace:
// the kept claim is Bound and served, the abandoned volume is either
// removed or reported as a leftover, and a live volume and a retained one
// in the same store keep their data.
func TestUnfinishedProvisionCollectedOnlyWhenClaimGone(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, ns, p := env.c, env.ns, env.p
	retain := ns + "-retain"
	storageClass(t, c, retain, p.cfg.Name, map[string]string{"onDelete": "retain"}, v1.PersistentVolumeReclaimDelete)
	live, liveContent := boundWithData(t, env, env.class, "live")
	kept, keptContent := boundWithData(t, env, retain, "kept")
	deleteClaim(t, c, ns, "kept")
	waitPVGone(t, c, kept.Name)
	before := p.volumeDirs()

	admin := p.cfg.Kubeconfig
	p.stop()
	p.cfg.Kubeconfig = noPVCreateKubeconfig(t, c, ns)
	p.restart()
	createClaim(t, c, framework.Claim(ns, "abandoned", env.class, "1Mi"))
	createClaim(t, c, framework.Claim(ns, "waiting", env.class, "1Mi"))
	var half []string
	framework.Eventually(t, 60*time.Second, "both volumes made without PVs", func() (bool, error) {
		half = nil
	dirs:
		for _, d := range p.volumeDirs() {
			// Not one of the earlier volumes, even renamed (today's
			// start-up archives leftovers as archived-<name>).
			for _, b := range before {
				if strings.Contains(d, b) {
					continue dirs
				}
			}
			half = append(half, d)
		}
		return len(half) == 2, nil
	})
	p.kill9()
	t.Logf("killed with unfinished volumes %v", half)
	deleteClaim(t, c, ns, "abandoned")

	p.cfg.Kubeconfig = admin
	p.restart()
	waiting := waitBound(t, c, ns, "waiting")
	nfsWrite(t, p, waiting, "data", []byte("waited"), 3)
	time.Sleep(intentGrace + settle)
	served(t, p, live, "data", liveContent)
	mustKeep(t, p, kept.Annotations[volume.AnnDirectory], "data", keptContent)
	served(t, p, waiting, "data", "waited")
	mustKeep(t, p, waiting.Annotations[volume.AnnDirectory], "data", "waited")
	for _, d := range half {
		if d == waiting.Annotations[volume.AnnDirectory] || !storeHas(t, p, d) {
			continue
		}
		waitLeftoverListed(t, p, d) // kept: then it must be reported
	}

	// A restart past the grace period changes nothing of the above.
	p.stop()
	p.restart()
	time.Sleep(settle)
	served(t, p, live, "data", liveContent)
	served(t, p, waiting, "data", "waited")
	mustKeep(t, p, kept.Annotations[volume.AnnDirectory], "data", keptContent)
}
