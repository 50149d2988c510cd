package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// TestKillDuringBurst: kill -9 the provisioner (and with it ganesha) in the
// middle of a burst of provisions and deletions, start it again on the same
// store, and check the invariants: every Bound PV exported and served with
// its data, no directory or export without a PV (archives aside), and no
// export ID used twice.
func TestKillDuringBurst(t *testing.T) {
	env := newTestEnv(t)
	c, ns, p, class := env.c, env.ns, env.p, env.class

	// A first batch, Bound and holding data before the crash.
	const first, second = 12, 24
	for i := range first {
		createClaim(t, c, framework.Claim(ns, fmt.Sprintf("old-%d", i), class, "1Mi"))
	}
	markers := map[string]string{} // PV name -> content written before the kill
	for i := range first {
		pv := waitBound(t, c, ns, fmt.Sprintf("old-%d", i))
		markers[pv.Name] = fmt.Sprintf("written before the kill to %s\n", pv.Name)
		nfsWrite(t, p, pv, "marker", []byte(markers[pv.Name]), 3)
	}

	// The burst: new claims and deletions of half the old ones, from
	// several goroutines, while the provisioner is killed.
	var wg sync.WaitGroup
	errs := make(chan error, second+first)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < second; i += 4 {
				if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), framework.Claim(ns, fmt.Sprintf("new-%d", i), class, "1Mi"), metav1.CreateOptions{}); err != nil {
					errs <- err
				}
				if i < first && i%2 == 0 {
					if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(context.Background(), fmt.Sprintf("old-%d", i), metav1.DeleteOptions{}); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	// Kill once the provisioner is visibly in the middle of the burst.
	framework.Eventually(t, 30*time.Second, "the burst under way", func() (bool, error) {
		pvs, err := c.Client.CoreV1().PersistentVolumes().List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return countOf(pvs.Items, p.cfg.Name) >= first+3, nil
	})
	time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
	p.kill9()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("killed the provisioner mid-burst; restarting it on the same store")
	p.restart()

	for i := range second {
		waitBound(t, c, ns, fmt.Sprintf("new-%d", i))
	}
	for i := 0; i < first; i += 2 {
		if i >= second {
			continue
		}
		framework.Eventually(t, 60*time.Second, "deleted claim's PV gone", func() (bool, error) {
			pvs, err := c.Client.CoreV1().PersistentVolumes().List(t.Context(), metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, pv := range pvs.Items {
				if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == ns && pv.Spec.ClaimRef.Name == fmt.Sprintf("old-%d", i) {
					return false, nil
				}
			}
			return true, nil
		})
	}
	for _, line := range strings.Split(p.log(), "\n") {
		if strings.Contains(line, "Reconciled exports") || strings.Contains(line, "no PV owns") {
			t.Logf("after restart: %s", line[strings.Index(line, "]")+2:])
		}
	}
	checkInvariants(t, c, p, markers)
}

func countOf(pvs []v1.PersistentVolume, provisioner string) int {
	n := 0
	for _, pv := range pvs {
		if pv.Annotations["pv.kubernetes.io/provisioned-by"] == provisioner {
			n++
		}
	}
	return n
}

// checkInvariants checks the store, ganesha and the PVs of provisioner p
// against each other, and reads every marker through a real NFS client.
func checkInvariants(t *testing.T, c *framework.Cluster, p *testProvisioner, markers map[string]string) {
	t.Helper()
	pvs, err := c.Client.CoreV1().PersistentVolumes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exports := map[string]uint16{} // pseudo path -> export ID
	for _, e := range p.exports(t.Context()) {
		exports[e.Pseudo] = e.ID
	}
	dirs := map[string]bool{}
	for _, d := range p.volumeDirs() {
		if !strings.HasPrefix(d, "archived-") {
			dirs[d] = true
		}
	}
	ids := map[string]string{}
	owned := 0
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if pv.Annotations["pv.kubernetes.io/provisioned-by"] != p.cfg.Name {
			continue
		}
		owned++
		dir, id := pv.Annotations[volume.AnnDirectory], pv.Annotations[volume.AnnExportID]
		if other, dup := ids[id]; dup {
			t.Errorf("export ID %s is on both %s and %s", id, other, pv.Name)
		}
		ids[id] = pv.Name
		if !dirs[dir] {
			t.Errorf("PV %s (%s): its directory %s is missing", pv.Name, pv.Status.Phase, dir)
		}
		delete(dirs, dir)
		got, ok := exports[pv.Spec.NFS.Path]
		if !ok || fmt.Sprint(got) != id {
			t.Errorf("PV %s (%s): export of %s is %d/%v, want ID %s", pv.Name, pv.Status.Phase, pv.Spec.NFS.Path, got, ok, id)
		}
		delete(exports, pv.Spec.NFS.Path)
		if pv.Status.Phase != v1.VolumeBound {
			continue
		}
		if want, ok := markers[pv.Name]; ok {
			if got := nfsRead(t, p, pv, "marker", 3); string(got) != want {
				t.Errorf("PV %s: marker %q, want %q", pv.Name, got, want)
			}
		} else {
			nfsWrite(t, p, pv, "after-restart", []byte("ok"), 3)
		}
	}
	for d := range dirs {
		t.Errorf("directory %s has no PV", d)
	}
	for path, id := range exports {
		t.Errorf("export %d (%s) has no PV", id, path)
	}
	t.Logf("%d PVs, each with one directory and one export; no duplicate IDs", owned)
}
