package chaos

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// The suite's shape. Kills come in two bursts around the API freeze and the
// full store; the workload runs throughout until it has done minOps.
const (
	storeSize     = 48 << 20
	killsBefore   = 8
	killsAfter    = 4
	minOps        = 200
	apiFreeze     = 45 * time.Second
	workers       = 4
	maxVolumes    = 40
	recoveryLimit = 90 * time.Second
	// sessionEvery paces the workload's NFS mounts to about 6 source
	// ports a second, plus the probes': well below what a minute of
	// TIME_WAIT lets 1023 privileged ports carry.
	sessionEvery = 350 * time.Millisecond
)

// figures is what a run measured.
type figures struct {
	ops, failedOps           [numOpKinds]int64
	provisionerKills         int
	ganeshaKills             int
	recoveries               []time.Duration // kill -> sentinel readable again
	freezeProbes, freezeMiss int
	freezeErrs               []string
	fillMiB                  int
	fullWrite                string // how a write to the full store ended
	files, volumes           int
	wall                     time.Duration
}

func (f *figures) totalOps() (n int64) {
	for _, o := range f.ops {
		n += o
	}
	return n
}

func (f *figures) recovery() (mean, worst time.Duration) {
	for _, d := range f.recoveries {
		mean += d
		worst = max(worst, d)
	}
	if len(f.recoveries) > 0 {
		mean /= time.Duration(len(f.recoveries))
	}
	return mean, worst
}

func (f *figures) log(tb testing.TB) {
	mean, worst := f.recovery()
	var ops []string
	for k := range numOpKinds {
		ops = append(ops, fmt.Sprintf("%s %d (%d refused or cut)", k, f.ops[k], f.failedOps[k]))
	}
	tb.Logf("chaos: %d operations: %s", f.totalOps(), strings.Join(ops, ", "))
	tb.Logf("chaos: %d kills (provisioner %d, ganesha.nfsd %d); NFS back after a kill in %v mean, %v worst",
		f.provisionerKills+f.ganeshaKills, f.provisionerKills, f.ganeshaKills, mean.Round(time.Millisecond), worst.Round(time.Millisecond))
	tb.Logf("chaos: API server frozen %v: %d NFS probes, %d missed", apiFreeze, f.freezeProbes, f.freezeMiss)
	tb.Logf("chaos: store filled with %d MiB through NFS; a write to the full store: %s", f.fillMiB, f.fullWrite)
	tb.Logf("chaos: at the end %d live volumes holding %d acknowledged files, all read back; wall time %v", f.volumes, f.files, f.wall.Round(time.Second))
}

// TestChaos: see the package comment; the pass conditions are issue 13's.
func TestChaos(t *testing.T) {
	f := runChaos(t)
	f.log(t)
}

// BenchmarkChaos reports the suite's figures for `make bench`.
func BenchmarkChaos(b *testing.B) {
	for range b.N {
		f := runChaos(b)
		mean, worst := f.recovery()
		b.ReportMetric(float64(f.totalOps()), "ops")
		b.ReportMetric(float64(f.provisionerKills+f.ganeshaKills), "kills")
		b.ReportMetric(float64(f.freezeProbes), "freeze-probes")
		b.ReportMetric(float64(f.freezeMiss), "freeze-misses")
		b.ReportMetric(mean.Seconds(), "recover-mean-s")
		b.ReportMetric(worst.Seconds(), "recover-worst-s")
		b.ReportMetric(f.wall.Seconds(), "wall-s")
	}
}

func runChaos(tb testing.TB) *figures {
	began := time.Now()
	f := &figures{}
	c := framework.Shared(tb)
	ns := c.Namespace(tb)
	store := framework.NewLoopStore(tb, storeSize, "ext4")
	// A fresh ext4's lost+found is e2e TestFreshExt4StoreStarts' concern.
	if err := os.Remove(filepath.Join(store.Dir, "lost+found")); err != nil {
		tb.Fatal(err)
	}
	n := newNode(tb, c, store.Dir, "-reconcile-interval=2s", "-intent-grace=5s")
	class := ns + "-chaos"
	reclaim, immediate := v1.PersistentVolumeReclaimDelete, storagev1.VolumeBindingImmediate
	if _, err := c.Client.StorageV1().StorageClasses().Create(tb.Context(), &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: class}, Provisioner: n.spec.Name,
		Parameters:    map[string]string{"onDelete": "delete"},
		ReclaimPolicy: &reclaim, VolumeBindingMode: &immediate,
	}, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = c.Client.StorageV1().StorageClasses().Delete(context.Background(), class, metav1.DeleteOptions{})
	})

	w := &workload{c: c, n: n, ns: ns, class: class, ledger: &ledger{live: map[string]*vol{}},
		keep: []string{"sentinel", "filler"}, maxVols: maxVolumes, notes: make(chan string, 64)}
	pace := time.NewTicker(sessionEvery)
	defer pace.Stop()
	w.sessions = pace.C
	w.provisioning.Store(true)
	sentinel := w.provisionNamed(tb.Context(), "sentinel")
	if sentinel == nil || sentinel.pv == nil {
		tb.Fatalf("the sentinel claim was not provisioned:\n%s", n.tail())
	}
	marker := []byte("sentinel: read every second\n")
	if err := nfsWrite(tb.Context(), w.target(sentinel.pv), "marker", marker); err != nil {
		tb.Fatal(err)
	}
	w.ledger.ack(sentinel, "marker", marker)
	readSentinel := func(ctx context.Context) error {
		got, err := nfsRead(ctx, w.target(sentinel.pv), "marker")
		if err == nil && !bytes.Equal(got, marker) {
			err = fmt.Errorf("sentinel marker reads %q", got)
		}
		return err
	}

	ctx, stopWorkload := context.WithCancel(tb.Context())
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { w.run(ctx, uint64(i+1)*7919+uint64(time.Now().UnixNano())) })
	}
	defer func() { stopWorkload(); wg.Wait() }()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))

	kill := func() {
		time.Sleep(time.Duration(1000+r.IntN(3000)) * time.Millisecond)
		t0 := time.Now()
		what := "ganesha.nfsd"
		if r.IntN(2) == 0 {
			what = "provisioner"
			f.provisionerKills++
			if err := n.killProvisioner(); err != nil {
				tb.Fatalf("restart after kill: %v", err)
			}
		} else {
			f.ganeshaKills++
			if err := n.killGanesha(); err != nil {
				tb.Fatalf("kill ganesha: %v\n%s", err, n.tail())
			}
		}
		for readSentinel(tb.Context()) != nil {
			if time.Since(t0) > recoveryLimit {
				tb.Fatalf("NFS not back %v after a kill:\n%s", recoveryLimit, n.tail())
			}
			time.Sleep(250 * time.Millisecond)
		}
		f.recoveries = append(f.recoveries, time.Since(t0))
		tb.Logf("chaos: kill %d (%s) at %v: NFS back in %v", len(f.recoveries), what, t0.Sub(began).Round(time.Second), time.Since(t0).Round(time.Millisecond))
		if time.Since(t0) > 10*time.Second {
			tb.Logf("chaos: slow recovery; the provisioner's log:\n%s", n.tail())
		}
	}

	// 1. Kills under load.
	for range killsBefore {
		kill()
	}

	// 2. The API server frozen; NFS probed every second.
	tb.Logf("chaos: freezing the API server at %v", time.Since(began).Round(time.Second))
	thaw := c.FreezeAPIServer(tb)
	frozen := time.Now()
	for time.Since(frozen) < apiFreeze {
		pctx, cancel := context.WithTimeout(tb.Context(), 5*time.Second)
		err := readSentinel(pctx)
		cancel()
		f.freezeProbes++
		if err != nil {
			f.freezeMiss++
			f.freezeErrs = append(f.freezeErrs, err.Error())
		}
		time.Sleep(time.Until(frozen.Add(time.Duration(f.freezeProbes) * time.Second)))
	}
	thaw()
	if !n.alive() {
		tb.Errorf("the provisioner exited during the API freeze:\n%s", n.tail())
		if err := n.start(); err != nil {
			tb.Fatal(err)
		}
	}

	// 3. The store filled through NFS: new claims refused, reads served,
	// writes failing cleanly. Provisions pause so that no workload claim
	// is refused into the library's long backoff.
	tb.Logf("chaos: filling the store at %v", time.Since(began).Round(time.Second))
	w.provisioning.Store(false)
	for w.inflight.Load() > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	filler := w.provisionNamed(tb.Context(), "filler")
	if filler == nil || filler.pv == nil {
		tb.Fatalf("the filler claim was not provisioned:\n%s", n.tail())
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(r.Uint32())
	}
	for f.fillMiB = 0; ; f.fillMiB++ {
		err := nfsWrite(tb.Context(), w.target(filler.pv), fmt.Sprintf("fill-%d", f.fillMiB), chunk)
		if err != nil {
			if strings.Contains(err.Error(), "no answer") {
				tb.Fatalf("a write to the filling store hung: %v", err)
			}
			break
		}
		if f.fillMiB > 2*storeSize>>20 {
			tb.Fatalf("%d MiB written into a %d MiB store", f.fillMiB, storeSize>>20)
		}
	}
	if err := nfsWrite(tb.Context(), w.target(sentinel.pv), "while-full", chunk); err == nil {
		f.fullWrite = "acknowledged (space was left)"
		w.ledger.ack(sentinel, "while-full", chunk)
	} else if strings.Contains(err.Error(), "no answer") {
		tb.Errorf("a write to the full store hung: %v", err)
	} else {
		f.fullWrite = "failed cleanly: " + err.Error()
	}
	if err := readSentinel(tb.Context()); err != nil {
		tb.Errorf("a read from the full store failed: %v", err)
	}
	refused := w.refusedWhileFull(tb)
	tb.Logf("chaos: a claim on the full store: %s", refused)
	if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(tb.Context(), "filler", metav1.DeleteOptions{}); err != nil {
		tb.Fatal(err)
	}
	w.ledger.remove(filler)
	framework.Eventually(tb, 60*time.Second, "the filler's space freed", func() (bool, error) {
		return !storeHolds(store.Dir, filler.pv), nil
	})
	w.provisioning.Store(true)

	// 4. More kills, and the workload until it has done enough.
	for range killsAfter {
		kill()
	}
	for deadline := time.Now().Add(60 * time.Second); w.total() < minOps && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	stopWorkload()
	wg.Wait()
	for k := range numOpKinds {
		f.ops[k], f.failedOps[k] = w.ops[k].Load(), w.failed[k].Load()
	}
	close(w.notes)
	for msg := range w.notes {
		tb.Logf("chaos: workload: %s", msg)
	}

	tb.Logf("chaos: checking at %v", time.Since(began).Round(time.Second))
	check(tb, f, w, n, store.Dir)
	n.stop()
	if err := store.Close(); err != nil {
		tb.Errorf("tear down the store: %v", err)
	}
	if err := store.Leaked(); err != nil {
		tb.Errorf("leak: %v", err)
	}
	f.wall = time.Since(began)
	if f.freezeMiss > 0 {
		tb.Errorf("%d of %d NFS reads failed while the API server was frozen: %s", f.freezeMiss, f.freezeProbes, strings.Join(f.freezeErrs, "; "))
	}
	if w.corrupt.Load() > 0 {
		tb.Errorf("%d acknowledged writes read back wrong right away", w.corrupt.Load())
	}
	if kills := f.provisionerKills + f.ganeshaKills; kills < 10 || f.totalOps() < minOps {
		tb.Errorf("the run was too small to count: %d kills, %d operations", kills, f.totalOps())
	}
	return f
}

// refusedWhileFull makes a claim on the full store and waits for its
// Warning event; the claim is then deleted, so it leaves nothing behind.
func (w *workload) refusedWhileFull(tb testing.TB) string {
	claim := framework.Claim(w.ns, "while-full", w.class, "1Mi", v1.ReadWriteMany)
	if _, err := w.c.Client.CoreV1().PersistentVolumeClaims(w.ns).Create(tb.Context(), claim, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	defer func() {
		_ = w.c.Client.CoreV1().PersistentVolumeClaims(w.ns).Delete(context.Background(), "while-full", metav1.DeleteOptions{})
	}()
	var msg string
	framework.Eventually(tb, 60*time.Second, "a Warning event on the claim made while the store is full", func() (bool, error) {
		pvc, err := w.c.Client.CoreV1().PersistentVolumeClaims(w.ns).Get(tb.Context(), "while-full", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if pvc.Status.Phase == v1.ClaimBound {
			return false, fmt.Errorf("a claim was Bound on the full store")
		}
		events, err := w.c.Client.CoreV1().Events(w.ns).List(tb.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=while-full"})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Type == v1.EventTypeWarning {
				msg = e.Reason + ": " + e.Message
				return true, nil
			}
		}
		return false, nil
	})
	return msg
}

// check compares the world with the ledger: the pass conditions of the
// suite.
func check(tb testing.TB, f *figures, w *workload, n *node, storeDir string) {
	ctx := tb.Context()
	c := w.c
	// Claims made while the provisioner was down are Bound by now or soon.
	for _, v := range w.ledger.live {
		if v.pv != nil {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
		pv, err := framework.WaitBound(wctx, c.Client, w.ns, v.claim)
		cancel()
		if err != nil {
			tb.Errorf("claim %s never got a volume: %v", v.claim, err)
			continue
		}
		v.pv = pv
	}

	pvs, err := c.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	exports, err := n.exports(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	byPseudo := map[string][]uint16{}
	for _, e := range exports {
		byPseudo[e.Pseudo] = append(byPseudo[e.Pseudo], e.ID)
	}
	ids := map[string]string{}
	pvByName := map[string]*v1.PersistentVolume{}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if pv.Annotations["pv.kubernetes.io/provisioned-by"] != n.spec.Name {
			continue
		}
		pvByName[pv.Name] = pv
		id := pv.Annotations[volume.AnnExportID]
		if other, dup := ids[id]; dup {
			tb.Errorf("export ID %s is on both %s and %s", id, other, pv.Name)
		}
		ids[id] = pv.Name
		if pv.Status.Phase != v1.VolumeBound {
			continue
		}
		got := byPseudo[pv.Spec.NFS.Path]
		if len(got) != 1 || strconv.Itoa(int(got[0])) != id {
			tb.Errorf("Bound PV %s: ganesha serves %s as %v, the PV says ID %s", pv.Name, pv.Spec.NFS.Path, got, id)
		}
		if _, err := nfsclient.List(ctx, w.target(pv), ""); err != nil {
			tb.Errorf("Bound PV %s is not served: %v", pv.Name, err)
		}
	}
	for pseudo, got := range byPseudo {
		if len(got) > 1 {
			tb.Errorf("%s is exported under several IDs %v", pseudo, got)
		}
	}

	v4 := 0
	for _, v := range w.ledger.live {
		if v.pv == nil {
			continue
		}
		f.volumes++
		pvc, err := c.Client.CoreV1().PersistentVolumeClaims(w.ns).Get(ctx, v.claim, metav1.GetOptions{})
		if err != nil || pvc.Status.Phase != v1.ClaimBound || pvc.Spec.VolumeName != v.pv.Name {
			tb.Errorf("claim %s lost its volume %s: %v %v", v.claim, v.pv.Name, pvc.Status.Phase, err)
			continue
		}
		if _, ok := pvByName[v.pv.Name]; !ok {
			tb.Errorf("PV %s of live claim %s is gone", v.pv.Name, v.claim)
			continue
		}
		if !storeHolds(storeDir, v.pv) {
			tb.Errorf("the volume of live claim %s is gone from the store", v.claim)
		}
		names := slices.Sorted(maps.Keys(v.files))
		f.files += len(names)
		// One mount per volume: see sessionEvery.
		got, err := nfsclient.ReadFiles(ctx, w.target(v.pv), names)
		if err != nil {
			tb.Errorf("acknowledged files of %s: %v", v.claim, err)
			continue
		}
		for _, name := range names {
			if !bytes.Equal(got[name], v.files[name]) {
				tb.Errorf("acknowledged %s/%s (%d bytes) reads back %d bytes, different", v.claim, name, len(v.files[name]), len(got[name]))
			}
		}
		if v4 < 5 && len(names) > 0 {
			t := w.target(v.pv)
			t.Version = 4
			got, err := nfsRead(ctx, t, names[0])
			if err != nil || !bytes.Equal(got, v.files[names[0]]) {
				tb.Errorf("acknowledged %s/%s over NFSv4: read %d bytes, %v", v.claim, names[0], len(got), err)
			}
			v4++
		}
	}
}

// storeHolds reports whether the volume of pv is in the store under its
// own name.
func storeHolds(storeDir string, pv *v1.PersistentVolume) bool {
	_, err := os.Stat(filepath.Join(storeDir, pv.Annotations[volume.AnnDirectory]))
	return err == nil
}
