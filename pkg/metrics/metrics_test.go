package metrics

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
)

type fakeVolumes []volume.VolumeInfo

func (f fakeVolumes) Volumes() []volume.VolumeInfo { return f }

type fakeGanesha struct {
	mu       sync.Mutex
	healthy  error
	restarts int
	io       []ganesha.ExportIO
}

func (g *fakeGanesha) Healthy() error { g.mu.Lock(); defer g.mu.Unlock(); return g.healthy }
func (g *fakeGanesha) Restarts() int  { g.mu.Lock(); defer g.mu.Unlock(); return g.restarts }
func (g *fakeGanesha) ExportIO(context.Context, bool) ([]ganesha.ExportIO, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.io), nil
}

func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value returns the value of the series of family name whose labels
// include want; ok false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestContract serves every source and checks that every nfs_provisioner_
// family served is in Names with exactly its labels, that every name in
// Names is served, and that the library's, Go's and the process's metrics
// are there too.
func TestContract(t *testing.T) {
	dir := t.TempDir()
	vdir := filepath.Join(dir, "pvc-1")
	if err := os.Mkdir(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := New()
	vols := fakeVolumes{
		{PV: "pvc-1", Namespace: "ns", Claim: "c1", StorageClass: "nfs", Kind: storage.Directory, ExportID: 1, Path: vdir, Capacity: 1 << 30},
		{PV: "pvc-2", Namespace: "ns", Claim: "c2", StorageClass: "nfs-xfs", Kind: storage.XFS, ExportID: 2, Path: dir, Capacity: 2 << 30},
	}
	g := &fakeGanesha{io: []ganesha.ExportIO{{ExportID: 1, ReadBytes: 10, WriteBytes: 20, ReadOps: 1, WriteOps: 2, Ops: 9}, {ExportID: 999, ReadBytes: 5}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Watch(ctx, Sources{Volumes: vols, StoreUsage: StatfsUsage(dir), Ganesha: g, UsageScanInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	m.Operation(volume.OpProvision, 3*time.Millisecond, nil)
	m.Operation(volume.OpDelete, time.Millisecond, errors.New("boom"))
	m.Reconciled(volume.ReconcileResult{Reexported: 2, Leftovers: 1})
	m.BusCall("org.ganesha.nfsd.exportmgr.AddExport", time.Millisecond, nil)
	m.collectFailed("store", errors.New("test"))
	m.Library().PersistentVolumeClaimProvisionTotal.WithLabelValues("nfs", "").Inc()

	waitScanned := func() map[string]*dto.MetricFamily {
		var fams map[string]*dto.MetricFamily
		deadline := time.Now().Add(10 * time.Second)
		for {
			fams = gather(t, m)
			if _, ok := fams[VolumeUsedBytes]; ok && len(fams[VolumeUsedBytes].Metric) == 2 {
				return fams
			}
			if time.Now().After(deadline) {
				t.Fatalf("the usage scan did not report within 10s: %v", fams[VolumeUsedBytes])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fams := waitScanned()

	for name, f := range fams {
		if !strings.HasPrefix(name, "nfs_provisioner_") {
			continue
		}
		labels, ok := Names[name]
		if !ok {
			t.Errorf("served %s, which is not in Names", name)
			continue
		}
		for _, s := range f.Metric {
			var got []string
			for _, l := range s.Label {
				got = append(got, l.GetName())
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(labels))
			if !slices.Equal(got, want) {
				t.Errorf("%s has labels %v, want %v", name, got, want)
			}
		}
	}
	for name := range Names {
		if fams[name] == nil {
			t.Errorf("%s is in Names but not served", name)
		}
	}
	for _, name := range append(slices.Clone(LibraryNames[:1]), "go_goroutines", "process_resident_memory_bytes") {
		if fams[name] == nil {
			t.Errorf("%s not served", name)
		}
	}
	// Export 999 is no volume of ours: no series for it.
	if n := len(fams[NFSReadBytesTotal].Metric); n != 1 {
		t.Errorf("%s has %d series, want 1 (only our volume's)", NFSReadBytesTotal, n)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{Volumes, map[string]string{"storageclass": "nfs", "kind": "directory"}, 1},
		{Volumes, map[string]string{"storageclass": "nfs-xfs", "kind": "xfs"}, 1},
		{VolumeCapacityBytes, map[string]string{"persistentvolume": "pvc-2", "namespace": "ns", "persistentvolumeclaim": "c2"}, 2 << 30},
		{NFSReadBytesTotal, map[string]string{"persistentvolume": "pvc-1"}, 10},
		{NFSWriteBytesTotal, map[string]string{"persistentvolume": "pvc-1"}, 20},
		{NFSOperationsTotal, map[string]string{"persistentvolume": "pvc-1", "op": "write"}, 2},
		{NFSOperationsTotal, map[string]string{"persistentvolume": "pvc-1", "op": "other"}, 6},
		{GaneshaUp, nil, 1},
		{ReconcileCorrected, map[string]string{"action": "reexported"}, 2},
		{ReconcileCorrected, map[string]string{"action": "converged"}, 0},
		{ReconcileReported, map[string]string{"finding": "leftovers"}, 1},
		{OperationSeconds, map[string]string{"operation": "delete", "result": "error"}, 1},
		{DBusCallSeconds, map[string]string{"method": "AddExport", "result": "success"}, 1},
	} {
		if got, ok := value(fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if got, _ := value(fams, StoreCapacityBytes, nil); got <= 0 {
		t.Errorf("%s = %v, want > 0", StoreCapacityBytes, got)
	}
}

// TestOtherOperationsNeverGoDown: ganesha's total and its read/write counts
// come from separate calls, so their difference may run ahead; the served
// counter holds its value until the truth catches up, and starts again only
// when ganesha restarted.
func TestOtherOperationsNeverGoDown(t *testing.T) {
	m := New()
	g := &fakeGanesha{}
	vols := fakeVolumes{{PV: "pv", Kind: storage.Directory, ExportID: 7}}
	if err := m.Watch(context.Background(), Sources{Volumes: vols, Ganesha: g}); err != nil {
		t.Fatal(err)
	}
	other := func(ops, r, w uint64) float64 {
		g.mu.Lock()
		g.io = []ganesha.ExportIO{{ExportID: 7, ReadOps: r, WriteOps: w, Ops: ops}}
		g.mu.Unlock()
		v, _ := value(gather(t, m), NFSOperationsTotal, map[string]string{"op": "other"})
		return v
	}
	for i, c := range []struct {
		ops, r, w uint64
		want      float64
	}{
		{10, 2, 2, 6},
		{12, 2, 2, 8}, // the total saw two reads the read count had not yet
		{12, 4, 2, 8}, // held, not 6
		{15, 4, 2, 9},
		{3, 1, 0, 2}, // ganesha restarted: counting starts again
	} {
		if got := other(c.ops, c.r, c.w); got != c.want {
			t.Errorf("step %d: other = %v, want %v", i, got, c.want)
		}
	}
}

// TestGaneshaDown: a dead ganesha reads as up 0 and its counters are not
// asked for.
func TestGaneshaDown(t *testing.T) {
	m := New()
	g := &fakeGanesha{healthy: errors.New("not running"), restarts: 3, io: []ganesha.ExportIO{{ExportID: 1, ReadBytes: 1}}}
	if err := m.Watch(context.Background(), Sources{Volumes: fakeVolumes{{PV: "pv", ExportID: 1}}, Ganesha: g}); err != nil {
		t.Fatal(err)
	}
	fams := gather(t, m)
	if v, ok := value(fams, GaneshaUp, nil); !ok || v != 0 {
		t.Errorf("ganesha_up = %v %v, want 0", v, ok)
	}
	if v, _ := value(fams, GaneshaRestartsTotal, nil); v != 3 {
		t.Errorf("restarts = %v, want 3", v)
	}
	if fams[NFSReadBytesTotal] != nil {
		t.Errorf("NFS counters served while ganesha is down")
	}
}

// TestDirUsage measures a real directory: a file counts by its allocated
// blocks, a hard link once, a sparse file by what it allocates, and a
// symlink's target not at all.
func TestDirUsage(t *testing.T) {
	root := t.TempDir()
	vol := filepath.Join(root, "vol")
	if err := os.MkdirAll(filepath.Join(vol, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(root, "outside")
	if err := os.WriteFile(outside, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(vol, "sub", "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(vol, "sub", "f"), filepath.Join(vol, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(vol, "link")); err != nil {
		t.Fatal(err)
	}
	sparse, err := os.Create(filepath.Join(vol, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sparse.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	sparse.Close()

	got, err := dirUsage(context.Background(), vol, &pacer{rate: 1e6, start: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// 1 MiB of data plus a few blocks of directories and the symlink.
	if got < 1<<20 || got > 1<<20+256<<10 {
		t.Errorf("dirUsage = %d bytes, want 1 MiB plus metadata", got)
	}
	if _, err := dirUsage(context.Background(), filepath.Join(root, "missing"), &pacer{rate: 1, start: time.Now()}); err == nil {
		t.Error("dirUsage of a missing directory did not fail")
	}
}

// TestScanIsRateBounded: 300 entries at 1000 per second cannot be walked in
// less than about 0.3 s, and a cancelled scan stops.
func TestScanIsRateBounded(t *testing.T) {
	vol := t.TempDir()
	for i := range 299 {
		if err := os.WriteFile(filepath.Join(vol, "f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String()), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := newUsageScanner(time.Hour, 1000)
	start := time.Now()
	n, err := s.scanOnce(context.Background(), []volume.VolumeInfo{{PV: "pv", Kind: storage.Directory, Path: vol}})
	if err != nil || n != 1 {
		t.Fatalf("scanOnce = %d, %v", n, err)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("300 entries at 1000/s took %v", took)
	}
	if _, ok := s.get("pv"); !ok {
		t.Error("no usage recorded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newUsageScanner(time.Hour, 1).scanOnce(ctx, []volume.VolumeInfo{{PV: "pv", Path: vol}}); err == nil {
		t.Error("a cancelled scan did not stop")
	}
}
