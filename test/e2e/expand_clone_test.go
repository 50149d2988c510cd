package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// expandableClass makes a class of the provisioner that allows expansion.
func expandableClass(t testing.TB, c *framework.Cluster, name, provisioner string, params map[string]string) {
	t.Helper()
	immediate := storagev1.VolumeBindingImmediate
	reclaim := v1.PersistentVolumeReclaimDelete
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: provisioner, Parameters: params,
		ReclaimPolicy: &reclaim, VolumeBindingMode: &immediate, AllowVolumeExpansion: ptr.To(true),
	}
	if _, err := c.Client.StorageV1().StorageClasses().Create(t.Context(), sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.StorageV1().StorageClasses().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// expandClaim asks for size and waits until the claim's status says it got
// at least that; it returns how long that took and the PV.
func expandClaim(t testing.TB, c *framework.Cluster, ns, name, size string) (time.Duration, *v1.PersistentVolume) {
	t.Helper()
	want := resource.MustParse(size)
	patch := fmt.Sprintf(`{"spec":{"resources":{"requests":{"storage":%q}}}}`, size)
	start := time.Now()
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var took time.Duration
	framework.Eventually(t, 90*time.Second, "claim "+name+" expanded to "+size, func() (bool, error) {
		pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got := pvc.Status.Capacity[v1.ResourceStorage]
		took = time.Since(start)
		return got.Cmp(want) >= 0 && len(pvc.Status.Conditions) == 0, nil
	})
	pvc, _ := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), name, metav1.GetOptions{})
	pv, err := c.Client.CoreV1().PersistentVolumes().Get(t.Context(), pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pv.Spec.Capacity[v1.ResourceStorage]; got.Cmp(want) < 0 {
		t.Fatalf("PV capacity %s after expansion to %s", got.String(), size)
	}
	return took, pv
}

func fsstat(t testing.TB, target nfsclient.Target) nfsclient.FSStat {
	t.Helper()
	raw, err := nfsclient.DialRaw(t.Context(), target)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	status, st, err := raw.FSStat(raw.Root)
	if err != nil || status != 0 {
		t.Fatalf("FSSTAT: %s %v", nfsclient.StatusName(status), err)
	}
	return st
}

// TestExpandAndClone: the lifecycle of issue 14 over NFS. An XFS volume
// grows online while a client writes to it (no write fails), and the client
// then sees the new size; an ext4 volume grows offline with an event that
// says so; a directory volume records its new size; a clone of a volume
// carries its data and is a volume of its own; deleting everything leaves
// no mount or loop device.
func TestExpandAndClone(t *testing.T) {
	env := newTestEnv(t)
	c, ns, p := env.c, env.ns, env.p
	params := func(extra map[string]string) map[string]string {
		m := map[string]string{"uid": "999", "gid": "999", "mode": "0770"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	expandableClass(t, c, ns+"-xfs", p.cfg.Name, params(map[string]string{"fsType": "xfs"}))
	expandableClass(t, c, ns+"-ext4", p.cfg.Name, params(map[string]string{"fsType": "ext4"}))
	expandableClass(t, c, ns+"-dir", p.cfg.Name, params(nil))

	createClaim(t, c, framework.Claim(ns, "grow", ns+"-xfs", "300Mi"))
	pv := waitBound(t, c, ns, "grow")
	target := p.target(pv, 3)
	target.UID, target.GID = 999, 999
	data := bytes.Repeat([]byte("grown and cloned\n"), 60000)
	if err := nfsclient.WriteFile(t.Context(), target, "data", data); err != nil {
		t.Fatal(err)
	}
	before := fsstat(t, target)

	// XFS grows while a client writes.
	var writes, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := nfsclient.WriteFile(context.Background(), target, fmt.Sprintf("during-%d", i), data[:64<<10]); err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
			writes.Add(1)
		}
	})
	took, pv := expandClaim(t, c, ns, "grow", "600Mi")
	time.Sleep(200 * time.Millisecond) // a few writes after the growth too
	close(stop)
	wg.Wait()
	t.Logf("FIGURE xfs online expansion 300Mi -> 600Mi: claim edit to status capacity %s; %d writes during it, %d failed", took.Round(time.Millisecond), writes.Load(), failures.Load())
	if failures.Load() != 0 || writes.Load() == 0 {
		t.Fatalf("%d of %d writes failed during the online expansion: %v", failures.Load(), writes.Load(), firstErr.Load())
	}
	after := fsstat(t, target)
	if after.TotalBytes < before.TotalBytes+250<<20 {
		t.Fatalf("FSSTAT total %d after growing, %d before", after.TotalBytes, before.TotalBytes)
	}
	if got := nfsRead(t, p, pv, "data", 3); !bytes.Equal(got, data) {
		t.Fatal("data changed by the expansion")
	}

	// A clone, larger than its source, carries the data and is its own volume.
	clone := framework.Claim(ns, "copy", ns+"-xfs", "700Mi")
	clone.Spec.DataSource = &v1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "grow"}
	createClaim(t, c, clone)
	clonePV := waitBound(t, c, ns, "copy")
	if clonePV.Annotations[volume.AnnDirectory] == pv.Annotations[volume.AnnDirectory] {
		t.Fatal("the clone names its source's volume")
	}
	cloneTarget := p.target(clonePV, 3)
	cloneTarget.UID, cloneTarget.GID = 999, 999
	if got, err := nfsclient.ReadFile(t.Context(), cloneTarget, "data"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("clone's data: %d bytes, %v", len(got), err)
	}
	if err := nfsclient.WriteFile(t.Context(), cloneTarget, "only-in-clone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := nfsclient.ReadFile(t.Context(), target, "only-in-clone"); err == nil {
		t.Fatal("a write to the clone shows in its source")
	}
	if st := fsstat(t, cloneTarget); st.TotalBytes <= after.TotalBytes {
		t.Fatalf("clone of 700Mi has %d bytes, its 600Mi source %d", st.TotalBytes, after.TotalBytes)
	}
	// A clone from another class is refused.
	foreign := framework.Claim(ns, "foreign-copy", ns+"-ext4", "700Mi")
	foreign.Spec.DataSource = &v1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "grow"}
	createClaim(t, c, foreign)
	warningEvent(t, c, ns, "foreign-copy", "only a claim of the same class can be cloned")

	// ext4 grows offline here (no CAP_SYS_RESOURCE), and says so.
	createClaim(t, c, framework.Claim(ns, "ext", ns+"-ext4", "40Mi"))
	extPV := waitBound(t, c, ns, "ext")
	nfsWrite(t, p, extPV, "kept", []byte("through an offline growth"), 3)
	took, extPV = expandClaim(t, c, ns, "ext", "80Mi")
	t.Logf("FIGURE ext4 offline expansion 40Mi -> 80Mi: claim edit to status capacity %s", took.Round(time.Millisecond))
	if got := nfsRead(t, p, extPV, "kept", 3); string(got) != "through an offline growth" {
		t.Fatalf("after the offline growth read %q", got)
	}
	framework.Eventually(t, 30*time.Second, "a "+volume.ReasonExpandOffline+" event on "+extPV.Name, func() (bool, error) {
		events, err := c.Client.CoreV1().Events(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + extPV.Name})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Reason == volume.ReasonExpandOffline {
				return true, nil
			}
		}
		return false, nil
	})

	// A directory volume only records its size.
	createClaim(t, c, framework.Claim(ns, "dir", ns+"-dir", "10Mi"))
	waitBound(t, c, ns, "dir")
	expandClaim(t, c, ns, "dir", "20Mi")

	for _, name := range []string{"copy", "grow", "ext", "dir", "foreign-copy"} {
		if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{clonePV.Name, pv.Name, extPV.Name} {
		waitPVGone(t, c, name)
	}
	if points, _ := framework.MountsUnder(p.cfg.ExportDir); len(points) != 0 {
		t.Fatalf("mounts left after every claim was deleted: %v", strings.Join(points, " "))
	}
}
