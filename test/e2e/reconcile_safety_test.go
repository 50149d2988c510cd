package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/metrics"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// Issue 13: reconciliation never deletes, moves or archives a volume; it
// only reports leftovers, and removes an export only when its PV is gone.

// TestRetainedVolumeSurvivesRestart: volumes kept by onDelete=retain, one
// holding data and one empty, stay in the store under their own names
// through restarts and periodic reconciliation, and are reported as
// leftovers (log, metric, and the operator's listing).
func TestRetainedVolumeSurvivesRestart(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, ns, p := env.c, env.ns, env.p
	retain := ns + "-retain"
	storageClass(t, c, retain, p.cfg.Name, map[string]string{"onDelete": "retain"}, v1.PersistentVolumeReclaimDelete)

	full, content := boundWithData(t, env, retain, "full")
	createClaim(t, c, framework.Claim(ns, "empty", retain, "1Mi"))
	empty := waitBound(t, c, ns, "empty")
	fullDir, emptyDir := full.Annotations[volume.AnnDirectory], empty.Annotations[volume.AnnDirectory]
	for _, name := range []string{"full", "empty"} {
		deleteClaim(t, c, ns, name)
	}
	waitPVGone(t, c, full.Name)
	waitPVGone(t, c, empty.Name)

	for round := range 2 {
		if round == 1 {
			p.stop()
			p.restart()
		}
		time.Sleep(settle)
		mustKeep(t, p, fullDir, "data", content)
		if !storeHas(t, p, emptyDir) {
			t.Fatalf("round %d: the empty retained volume %s was removed; store holds %v", round, emptyDir, p.volumeDirs())
		}
		for _, d := range p.volumeDirs() {
			if d != fullDir && d != emptyDir {
				t.Errorf("round %d: unexpected entry %s in the store (moved or archived?)", round, d)
			}
		}
	}
	waitLeftoverListed(t, p, fullDir)
	waitLeftoverListed(t, p, emptyDir)
	if log := strings.ToLower(p.log()); !strings.Contains(log, "leftover") {
		t.Errorf("the log of the restarted provisioner does not report leftovers")
	}
	if n := leftoverMetric(t, p); n < 2 {
		t.Errorf("leftover metric is %v, want at least 2", n)
	}
}

// leftoverMetric is the value of the reconciliation's leftovers gauge on
// /metrics, or -1 if it is not served.
func leftoverMetric(t testing.TB, p *testProvisioner) float64 {
	t.Helper()
	v, ok := metricSamples(t, p, metrics.ReconcileReported)[`{finding="leftovers"}`]
	if !ok {
		return -1
	}
	return v
}

// TestUnreadableAnnotationKeepsVolumeServed: a live PV whose on-delete
// annotation reads Bogus (a typo, or a newer version's value) stays
// exported, keeps its directory, and gets a Warning event, both while the
// provisioner runs and across a restart.
func TestUnreadableAnnotationKeepsVolumeServed(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, p := env.c, env.p
	pv, content := boundWithData(t, env, env.class, "typo")
	dir := pv.Annotations[volume.AnnDirectory]
	patchPVAnnotation(t, c, pv.Name, volume.AnnOnDelete, "Bogus")
	t.Logf("event: %s", pvWarning(t, c, pv.Name, "Bogus"))
	for round := range 2 {
		if round == 1 {
			p.stop()
			p.restart()
		}
		time.Sleep(settle)
		served(t, p, pv, "data", content)
		mustKeep(t, p, dir, "data", content)
		if len(p.volumeDirs()) != 1 {
			t.Fatalf("round %d: store holds %v, want only %s", round, p.volumeDirs(), dir)
		}
	}
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims(env.ns).Get(t.Context(), "typo", metav1.GetOptions{})
	if err != nil || pvc.Status.Phase != v1.ClaimBound {
		t.Fatalf("claim after restart: %v, %v", pvc.Status.Phase, err)
	}
}

// TestPVDeletedOutOfBandLosesExportKeepsData: a PV deleted with kubectl
// while the provisioner runs loses its export within the reconcile
// interval, without a restart; its data stays, reported as a leftover.
func TestPVDeletedOutOfBandLosesExportKeepsData(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, ns, p := env.c, env.ns, env.p
	keep := ns + "-keep"
	storageClass(t, c, keep, p.cfg.Name, nil, v1.PersistentVolumeReclaimRetain)
	pv, content := boundWithData(t, env, keep, "oob")
	dir := pv.Annotations[volume.AnnDirectory]
	deleteClaim(t, c, ns, "oob")
	framework.Eventually(t, 60*time.Second, "PV Released", func() (bool, error) {
		return getPV(t, c, pv.Name).Status.Phase == v1.VolumeReleased, nil
	})
	served(t, p, pv, "data", content) // Retain: still exported while the PV exists
	pid := p.proc.PID()
	deletePV(t, c, pv.Name)
	framework.Eventually(t, settle+10*time.Second, "export of the deleted PV removed", func() (bool, error) {
		_, _, _, ok := exportOf(t, p, pv)
		return !ok, nil
	})
	nfsRefused(t, p, pv)
	mustKeep(t, p, dir, "data", content)
	waitLeftoverListed(t, p, dir)
	if p.proc.PID() != pid {
		t.Fatalf("the provisioner was restarted")
	}
}

// TestRetainPolicyPVDeletedKeepsDataThroughRestart: the same PV deleted by
// hand, then a restart: the leftover is still kept.
func TestRetainPolicyPVDeletedKeepsDataThroughRestart(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, ns, p := env.c, env.ns, env.p
	keep := ns + "-keep"
	storageClass(t, c, keep, p.cfg.Name, nil, v1.PersistentVolumeReclaimRetain)
	pv, content := boundWithData(t, env, keep, "kept")
	deleteClaim(t, c, ns, "kept")
	framework.Eventually(t, 60*time.Second, "PV Released", func() (bool, error) {
		return getPV(t, c, pv.Name).Status.Phase == v1.VolumeReleased, nil
	})
	p.stop()
	deletePV(t, c, pv.Name)
	p.restart()
	time.Sleep(settle)
	mustKeep(t, p, pv.Annotations[volume.AnnDirectory], "data", content)
	if _, _, _, ok := exportOf(t, p, pv); ok {
		t.Errorf("the export of deleted PV %s is back", pv.Name)
	}
	waitLeftoverListed(t, p, pv.Annotations[volume.AnnDirectory])
}

// TestExportSubnetChangeReachesExistingExports: a restart with a changed
// -export-subnet applies to exports made before it: within the reconcile
// interval a client outside the new subnet is refused, and it is let in
// again when the subnet is changed back.
func TestExportSubnetChangeReachesExistingExports(t *testing.T) {
	env := newTestEnv(t, append(fastReconcile, "-export-subnet=127.0.0.0/8")...)
	p := env.p
	pv, content := boundWithData(t, env, env.class, "subnet")

	restartWithSubnet(t, p, "192.0.2.1", func() bool {
		_, err3 := readWithin(t.Context(), p.target(pv, 3), "data")
		_, err4 := readWithin(t.Context(), p.target(pv, 4), "data")
		return err3 != nil && err4 != nil
	})
	if _, clients, _, ok := exportOf(t, p, pv); !ok || strings.Join(clients, ",") != "192.0.2.1" {
		t.Errorf("the export's clients are %v (exported %v), want [192.0.2.1]", clients, ok)
	}
	restartWithSubnet(t, p, "127.0.0.0/8", func() bool {
		got, err := readWithin(t.Context(), p.target(pv, 3), "data")
		return err == nil && string(got) == content
	})
	served(t, p, pv, "data", content)
}

// restartWithSubnet restarts p with -export-subnet=subnet and waits until
// applied() holds. How long the old subnet was still served after /readyz
// is logged: the audit's operator narrowing a subnet wants it short.
func restartWithSubnet(t *testing.T, p *testProvisioner, subnet string, applied func() bool) {
	t.Helper()
	p.stop()
	p.cfg.ExtraArgs = append(fastReconcile, "-export-subnet="+subnet)
	p.restart()
	ready := time.Now()
	framework.Eventually(t, settle+10*time.Second, "-export-subnet="+subnet+" applied to the existing export", func() (bool, error) {
		return applied(), nil
	})
	t.Logf("-export-subnet=%s applied %v after /readyz", subnet, time.Since(ready).Round(10*time.Millisecond))
}

// TestRootSquashAnnotationChangeReachesExport: changing a live PV's
// root-squash annotation changes its export within the reconcile interval:
// root over NFS is squashed from then on.
func TestRootSquashAnnotationChangeReachesExport(t *testing.T) {
	env := newTestEnv(t, fastReconcile...)
	c, ns, p := env.c, env.ns, env.p
	open := ns + "-nosquash"
	storageClass(t, c, open, p.cfg.Name, map[string]string{"rootSquash": "false", "mode": "0777"}, v1.PersistentVolumeReclaimDelete)
	createClaim(t, c, framework.Claim(ns, "squash", open, "1Mi"))
	pv := waitBound(t, c, ns, "squash")
	nfsWrite(t, p, pv, "before", []byte("root"), 3)
	dir := filepath.Join(p.cfg.ExportDir, pv.Annotations[volume.AnnDirectory])
	if uid := ownerOf(t, filepath.Join(dir, "before")); uid != 0 {
		t.Fatalf("precondition: root's file is owned by %d without root squash", uid)
	}
	_, _, before, _ := exportOf(t, p, pv)

	patchPVAnnotation(t, c, pv.Name, volume.AnnRootSquash, "true")
	framework.Eventually(t, settle+10*time.Second, "export squashes root", func() (bool, error) {
		_, _, squash, ok := exportOf(t, p, pv)
		return ok && squash != before, nil
	})
	if err := writeWithin(t.Context(), p.target(pv, 3), "after", []byte("root?")); err == nil {
		if uid := ownerOf(t, filepath.Join(dir, "after")); uid == 0 {
			t.Fatalf("root wrote a file owned by uid 0 after root-squash=true")
		}
	}
}

func ownerOf(t testing.TB, path string) uint32 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return statUID(fi)
}
