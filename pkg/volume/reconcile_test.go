package volume

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// pv saves a PV of this store naming volume dir under export ID id.
func (f *fixture) pv(t *testing.T, name, dir string, id int, age time.Duration, extra map[string]string) *v1.PersistentVolume {
	t.Helper()
	ann := map[string]string{AnnIdentity: "store-1", AnnExportID: fmt.Sprint(id), AnnDirectory: dir}
	for k, v := range extra {
		ann[k] = v
	}
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Now().Add(-age)), Annotations: ann}}
	pv, err := f.client.CoreV1().PersistentVolumes().Create(context.Background(), pv, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pv
}

func (f *fixture) events() string {
	var out []string
	for {
		select {
		case ev := <-f.recorder.Events:
			out = append(out, ev)
		default:
			return strings.Join(out, "\n")
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReconcileNeverDestroys(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	f.mkdir(t, "ns-old-pv-old")
	f.mkdir(t, "ns-young-pv-young")
	served := f.mkdir(t, "ns-served-pv-served")
	f.pv(t, "pv-old", "ns-old-pv-old", 5, time.Hour, nil)
	f.pv(t, "pv-young", "ns-young-pv-young", 5, time.Minute, nil) // duplicate ID: young must move
	f.pv(t, "pv-served", "ns-served-pv-served", 9, time.Hour, nil)
	f.exporter.exports[9] = ganesha.Export{ID: 9, Path: served, Pseudo: "/ns-served-pv-served", Squash: ganesha.NoRootSquash}
	// An export whose PV is gone, one of someone else, and leftovers: an
	// empty directory, one with data, and one kept under onDelete=retain.
	gone := f.mkdir(t, "ns-gone-pv-gone")
	f.exporter.exports[40] = ganesha.Export{ID: 40, Path: gone, Pseudo: "/ns-gone-pv-gone"}
	f.exporter.exports[77] = ganesha.Export{ID: 77, Path: "/elsewhere"} // not ours: no pseudo path we made
	f.mkdir(t, "orphan-empty")
	writeFile(t, filepath.Join(f.mkdir(t, "orphan-data"), "f"), "keep me")

	f.p = f.newProvisioner(t, -1) // as after a restart
	res, err := f.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := ReconcileResult{Volumes: 3, AlreadyExported: 1, Reexported: 2, StrayExports: 1, Refused: 1, Leftovers: 3}
	if res != want {
		t.Fatalf("result %+v, want %+v", res, want)
	}
	young, _ := f.client.CoreV1().PersistentVolumes().Get(ctx, "pv-young", metav1.GetOptions{})
	if young.Annotations[AnnExportID] == "5" || f.exporter.exports[5].Pseudo != "/ns-old-pv-old" {
		t.Fatalf("the younger duplicate kept export ID 5: %v", young.Annotations)
	}
	if _, ok := f.exporter.exports[77]; !ok {
		t.Fatal("an export that is not ours was removed")
	}
	if _, ok := f.exporter.exports[40]; ok {
		t.Fatal("the export of a volume whose PV is gone is still there")
	}
	for _, dir := range []string{"ns-gone-pv-gone", "orphan-empty", "orphan-data"} {
		if _, err := os.Stat(filepath.Join(f.store.Root(), dir)); err != nil {
			t.Errorf("leftover %s was not kept: %v", dir, err)
		}
	}
	listing, err := os.ReadFile(f.state.LeftoversFile())
	if err != nil || !strings.Contains(string(listing), "orphan-data\tdirectory") || !strings.Contains(string(listing), "ns-gone-pv-gone") {
		t.Fatalf("leftovers listing %q %v", listing, err)
	}
	if ev := f.events(); !strings.Contains(ev, ReasonDuplicateExportID) {
		t.Fatalf("no event about the moved export ID: %q", ev)
	}
	// A second pass finds nothing to do.
	res, err = f.p.Reconcile(ctx)
	if err != nil || res.AlreadyExported != 3 || res.changed() {
		t.Fatalf("second pass %+v %v", res, err)
	}
}

func TestReconcileServesUnreadableAnnotations(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	path := f.mkdir(t, "ns-c-pv-bogus")
	writeFile(t, filepath.Join(path, "data"), "live")
	pv := f.pv(t, "pv-bogus", "ns-c-pv-bogus", 3, time.Hour, map[string]string{AnnOnDelete: "Bogus", AnnRootSquash: "perhaps"})
	res, err := f.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := f.exporter.exports[3]
	if !ok || e.Path != path || e.Squash != ganesha.RootSquash {
		t.Fatalf("a live PV with odd annotations is not served (root squashed): %+v", f.exporter.exports)
	}
	if res.Unreadable != 1 || res.Leftovers != 0 || !strings.Contains(f.events(), ReasonBadAnnotations) {
		t.Fatalf("result %+v", res)
	}
	// Deleting it keeps the data: the onDelete it asked for is unknown.
	if err := f.p.Delete(ctx, pv); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(path, "data")); err != nil || string(data) != "live" {
		t.Fatalf("data of a PV with an unreadable onDelete was not kept: %v", err)
	}
}

func TestReconcileRefusesForgedOwnership(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	opts := claimOptions("db", "data", "1Mi", nil)
	real, _, err := f.p.Provision(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.CoreV1().PersistentVolumes().Create(ctx, real, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := real.Annotations[AnnDirectory]
	writeFile(t, filepath.Join(f.store.Root(), dir, "precious"), "data")
	// A copy under another name, and one whose name even ends like the
	// original's (suffix tricks do not beat the ledger).
	copied := real.DeepCopy()
	copied.ResourceVersion = ""
	copied.Name = "x-" + real.Name
	copied.Annotations[AnnExportID] = "999"
	if _, err := f.client.CoreV1().PersistentVolumes().Create(ctx, copied, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Refused != 1 || !strings.Contains(f.events(), ReasonOwnershipRefused) {
		t.Fatalf("result %+v", res)
	}
	if _, served := f.exporter.exports[999]; served {
		t.Fatal("the copied PV got an export")
	}
	if err := f.p.Delete(ctx, copied); err == nil {
		t.Fatal("Delete of the copied PV succeeded")
	}
	if data, err := os.ReadFile(filepath.Join(f.store.Root(), dir, "precious")); err != nil || string(data) != "data" {
		t.Fatalf("the original's data is gone: %v", err)
	}
	id := real.Annotations[AnnExportID]
	if e, ok := f.exporter.exports[uint16(mustAtoi(t, id))]; !ok || e.Pseudo != "/"+dir {
		t.Fatal("the original stopped being served")
	}
}

func TestReconcileConvergesOptions(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	pv, _, err := f.p.Provision(ctx, claimOptions("ns", "c", "1Mi", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A restart with -export-subnet set, and the PV's root squash turned on.
	f.p.opts.Clients = []string{"10.1.0.0/16"}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}}}`, AnnRootSquash)
	if _, err := f.client.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.p.Reconcile(ctx)
	if err != nil || res.Converged != 1 || f.exporter.updates != 1 {
		t.Fatalf("result %+v %v, updates %d", res, err, f.exporter.updates)
	}
	e := f.exporter.exports[uint16(mustAtoi(t, pv.Annotations[AnnExportID]))]
	if e.Squash != ganesha.RootSquash || len(e.Clients) != 1 || e.Clients[0] != "10.1.0.0/16" {
		t.Fatalf("export not converged: %+v", e)
	}
}

func TestUnfinishedProvisionIsReapedOnlyWhenNobodyGotIt(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	opts := claimOptions("ns", "c", "1Mi", nil)
	claim := opts.PVC.DeepCopy()
	if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pv, _, err := f.p.Provision(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := pv.Annotations[AnnDirectory]
	// As if the process died after exporting, before Provision returned:
	// the record still says provisioning, and the PV is never saved.
	o, _, _ := f.state.Owner(dir)
	o.Provisioning = true
	if err := f.state.SetOwner(dir, o); err != nil {
		t.Fatal(err)
	}
	pass := func() ReconcileResult {
		t.Helper()
		res, err := f.newProvisioner(t, -1).Reconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// Within the grace period, and later while the claim still waits for it: kept.
	if res := pass(); res.ReapedIntents != 0 || len(f.exporter.exports) != 1 {
		t.Fatalf("reaped within the grace period: %+v", res)
	}
	f.clock.Step(2 * time.Minute)
	if res := pass(); res.ReapedIntents != 0 {
		t.Fatalf("reaped while its claim may still get it: %+v", res)
	}
	// The claim is gone: nobody can have received the volume.
	if err := f.client.CoreV1().PersistentVolumeClaims("ns").Delete(ctx, claim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if res := pass(); res.ReapedIntents != 1 || len(f.exporter.exports) != 0 {
		t.Fatalf("not reaped once the claim is gone: %+v exports %v", res, f.exporter.exports)
	}
	if _, err := os.Stat(filepath.Join(f.store.Root(), dir)); !os.IsNotExist(err) {
		t.Fatalf("volume of the unfinished provision still there: %v", err)
	}
}

func TestRetainedVolumeIsKeptAndNotServed(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	pv, _, err := f.p.Provision(ctx, claimOptions("ns", "c", "1Mi", map[string]string{"onDelete": "retain"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Delete(ctx, pv); err != nil {
		t.Fatal(err)
	}
	// The PV object lingers a moment, then goes; restarts in between.
	for range 2 {
		res, err := f.newProvisioner(t, -1).Reconcile(ctx)
		if err != nil || len(f.exporter.exports) != 0 {
			t.Fatalf("a retained volume was served again: %+v %v %v", res, err, f.exporter.exports)
		}
		_ = f.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	}
	if _, err := os.Stat(filepath.Join(f.store.Root(), pv.Annotations[AnnDirectory])); err != nil {
		t.Fatalf("retained volume lost: %v", err)
	}
}

func TestIdentityIsNeverRegenerated(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	if err := f.state.SetIdentity("store-1"); err != nil {
		t.Fatal(err)
	}
	f.mkdir(t, "ns-c-pv-1")
	f.pv(t, "pv-1", "ns-c-pv-1", 1, time.Hour, nil)
	if err := os.Remove(f.state.identityPath()); err != nil {
		t.Fatal(err)
	}
	id, err := ResolveIdentity(ctx, f.state, f.client, []storage.Backend{f.store})
	if err != nil || id != "store-1" {
		t.Fatalf("identity %q %v, want it recovered from the PVs", id, err)
	}
	// No PV names the store's volumes: refuse, and say how to fix it.
	if err := f.client.CoreV1().PersistentVolumes().Delete(ctx, "pv-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(f.state.identityPath())
	if _, err := ResolveIdentity(ctx, f.state, f.client, []storage.Backend{f.store}); err == nil || !strings.Contains(err.Error(), "uuidgen >") {
		t.Fatalf("error %v, want a refusal that says how to restore the identity", err)
	}
	if _, ok, _ := f.state.Identity(); ok {
		t.Fatal("a new identity was written for a store holding volumes")
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestVolumesForMetrics(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	path := f.mkdir(t, "ns-c-pv-1")
	pv := f.pv(t, "pv-1", "ns-c-pv-1", 4, time.Hour, nil)
	pv.Spec.ClaimRef = &v1.ObjectReference{Namespace: "ns", Name: "c"}
	pv.Spec.StorageClassName = "nfs"
	pv.Spec.Capacity = v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}
	if _, err := f.client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got := f.p.Volumes()
	want := VolumeInfo{PV: "pv-1", Namespace: "ns", Claim: "c", StorageClass: "nfs", Kind: storage.Directory, ExportID: 4, Path: path, Capacity: 1 << 30}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("Volumes() = %+v, want [%+v]", got, want)
	}
}

// A volume handed over in a PV is never reaped, even when its claim and PV
// are both gone before any pass saw them (a Retain PV deleted by hand).
func TestDeliveredVolumeIsNeverReaped(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	pv, _, err := f.p.Provision(ctx, claimOptions("ns", "c", "1Mi", nil))
	if err != nil {
		t.Fatal(err)
	}
	dir := pv.Annotations[AnnDirectory]
	writeFile(t, filepath.Join(f.store.Root(), dir, "data"), "user data")
	f.clock.Step(time.Hour) // far past the grace period; no claim, no PV
	res, err := f.newProvisioner(t, -1).Reconcile(ctx)
	if err != nil || res.ReapedIntents != 0 || res.Leftovers != 1 {
		t.Fatalf("result %+v %v: want the volume kept as a leftover", res, err)
	}
	if data, err := os.ReadFile(filepath.Join(f.store.Root(), dir, "data")); err != nil || string(data) != "user data" {
		t.Fatalf("delivered volume lost: %v", err)
	}
}

// The library saves a PV only after Provision returned it. A pass in between
// (PV events of other claims trigger passes all through a burst) must not
// take the new volume's export for one whose PV is gone; once the PV is seen
// the volume is an ordinary one, and a PV never saved loses its export after
// IntentGrace, never its data.
func TestReconcileKeepsExportOfPVBeingSaved(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	served, _, err := f.p.Provision(ctx, claimOptions("db", "data-0", "1Gi", nil))
	if err != nil {
		t.Fatal(err)
	}
	lost, _, err := f.p.Provision(ctx, claimOptions("db", "data-1", "1Gi", nil))
	if err != nil {
		t.Fatal(err)
	}
	exported := func(pv *v1.PersistentVolume) bool {
		t.Helper()
		id, err := strconv.ParseUint(pv.Annotations[AnnExportID], 10, 16)
		if err != nil {
			t.Fatal(err)
		}
		f.exporter.mu.Lock()
		defer f.exporter.mu.Unlock()
		return f.exporter.exports[uint16(id)].Pseudo == PseudoPath(pv.Annotations[AnnDirectory])
	}
	res, err := f.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !exported(served) || !exported(lost) || res.StrayExports != 0 || res.Leftovers != 0 {
		t.Fatalf("a pass before the PVs were saved: %+v; exported %v %v", res, exported(served), exported(lost))
	}

	if _, err := f.client.CoreV1().PersistentVolumes().Create(ctx, served, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err = f.p.Reconcile(ctx); err != nil || res.AlreadyExported != 1 || res.StrayExports != 0 || !exported(lost) {
		t.Fatalf("pass after one PV was saved: %+v %v", res, err)
	}

	f.clock.Step(time.Minute + time.Second) // the fixture's IntentGrace
	if res, err = f.p.Reconcile(ctx); err != nil || res.StrayExports != 1 || res.Leftovers != 1 {
		t.Fatalf("pass after IntentGrace: %+v %v", res, err)
	}
	if !exported(served) || exported(lost) {
		t.Fatalf("after IntentGrace: saved PV exported %v, never saved PV exported %v", exported(served), exported(lost))
	}
	if _, err := os.Stat(filepath.Join(f.store.Root(), lost.Annotations[AnnDirectory])); err != nil {
		t.Fatalf("the data of the PV never saved was not kept: %v", err)
	}
}

// A pass waits for the operations under way to end rather than stall every
// claim behind it, but not for longer than its limit.
func TestPassWaitsForOperationsUnderWay(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	release := f.p.share()
	done := make(chan struct{})
	go func() {
		f.p.awaitQuiet(ctx, time.Hour)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("a pass did not wait for an operation under way")
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a pass still waits after the operation ended")
	}

	defer f.p.share()()
	start := time.Now()
	f.p.awaitQuiet(ctx, 200*time.Millisecond)
	if waited := time.Since(start); waited < 200*time.Millisecond || waited > 10*time.Second {
		t.Fatalf("with an operation under way for good, a pass waited %v, want its limit of 200ms", waited)
	}
}
