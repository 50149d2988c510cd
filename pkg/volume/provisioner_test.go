package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage/directory"
)

// fakeExporter stands in for ganesha in these unit tests of the
// provisioner's own logic; test/e2e proves the real thing.
type fakeExporter struct {
	mu      sync.Mutex
	exports map[uint16]ganesha.Export
	failAdd error
	updates int
}

func newFakeExporter() *fakeExporter { return &fakeExporter{exports: map[uint16]ganesha.Export{}} }

func (f *fakeExporter) Add(_ context.Context, e ganesha.Export) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAdd != nil {
		return f.failAdd
	}
	if old, ok := f.exports[e.ID]; ok && old.Path != e.Path {
		return fmt.Errorf("export %d: %w", e.ID, ganesha.ErrConflict)
	}
	f.exports[e.ID] = e
	return nil
}

func (f *fakeExporter) Update(_ context.Context, e ganesha.Export) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	old, ok := f.exports[e.ID]
	if !ok || old.Path != e.Path || old.Pseudo != e.Pseudo {
		return fmt.Errorf("export %d: %w", e.ID, ganesha.ErrUnsupported)
	}
	f.exports[e.ID] = e
	f.updates++
	return nil
}

func (f *fakeExporter) Remove(_ context.Context, id uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.exports, id)
	return nil
}

func (f *fakeExporter) List(context.Context) ([]ganesha.Export, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ganesha.Export
	for _, e := range f.exports {
		out = append(out, e)
	}
	return out, nil
}

type fixture struct {
	p        *Provisioner
	store    *directory.Backend
	state    *State
	exporter *fakeExporter
	client   *fake.Clientset
	recorder *record.FakeRecorder
	clock    *clocktesting.FakeClock
}

func newFixture(t *testing.T, maxExports int) *fixture {
	t.Helper()
	store, err := directory.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	state, err := OpenState(store.Root())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, state: state, exporter: newFakeExporter(), client: fake.NewSimpleClientset(), recorder: record.NewFakeRecorder(100),
		clock: clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	f.p = f.newProvisioner(t, maxExports)
	if _, err := f.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

// newProvisioner is a provisioner on the fixture's store, as after a restart.
func (f *fixture) newProvisioner(t *testing.T, maxExports int) *Provisioner {
	t.Helper()
	p, err := New(Options{Identity: "store-1", Backends: []storage.Backend{f.store}, State: f.state, Exporter: f.exporter,
		Server: "10.0.0.7", MaxExports: maxExports, Client: f.client, Recorder: f.recorder, Clock: f.clock, IntentGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mkdir makes a directory volume in the store, as a release or a claim did.
func (f *fixture) mkdir(t *testing.T, name string) string {
	t.Helper()
	v, _, err := f.store.Create(context.Background(), storage.Spec{Name: name, Kind: storage.Directory, Mode: 0o777})
	if err != nil {
		t.Fatal(err)
	}
	return v.Path
}

func claimOptions(ns, name, size string, params map[string]string) controller.ProvisionOptions {
	uid := types.UID(fmt.Sprintf("uid-%s-%s", ns, name))
	return controller.ProvisionOptions{
		PVName: "pvc-" + string(uid),
		PVC: &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid},
			Spec: v1.PersistentVolumeClaimSpec{
				AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOncePod},
				Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)}},
			},
		},
		StorageClass: &storagev1.StorageClass{
			ObjectMeta:   metav1.ObjectMeta{Name: "nfs"},
			Provisioner:  "example.com/nfs",
			Parameters:   params,
			MountOptions: []string{"vers=4.1", "hard"},
		},
	}
}

// leftovers lists what is in the store besides the state directory.
func (f *fixture) leftovers(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(f.store.Root())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != StateDirName {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestProvisionAndDelete(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []OnDelete{OnDeleteDelete, OnDeleteRetain, OnDeleteArchive} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFixture(t, -1)
			opts := claimOptions("db", "data-0", "1Gi", map[string]string{"gid": "999", "onDelete": string(mode), "mountOptions": "hard,noatime"})
			pv, state, err := f.p.Provision(ctx, opts)
			if err != nil || state != controller.ProvisioningFinished {
				t.Fatalf("Provision: %v %v", state, err)
			}
			dir := pv.Annotations[AnnDirectory]
			if pv.Spec.NFS.Server != "10.0.0.7" || pv.Spec.NFS.Path != "/"+dir {
				t.Errorf("NFS source %+v", pv.Spec.NFS)
			}
			if pv.Annotations[AnnVolumeGID] != "999" || pv.Annotations[AnnOnDelete] != string(mode) {
				t.Errorf("annotations %v", pv.Annotations)
			}
			if got := strings.Join(pv.Spec.MountOptions, ","); got != "vers=4.1,hard,noatime" {
				t.Errorf("mount options %s", got)
			}
			if pv.Spec.PersistentVolumeReclaimPolicy != v1.PersistentVolumeReclaimDelete || pv.Spec.AccessModes[0] != v1.ReadWriteOncePod {
				t.Errorf("reclaim %s modes %v", pv.Spec.PersistentVolumeReclaimPolicy, pv.Spec.AccessModes)
			}
			if len(f.exporter.exports) != 1 {
				t.Fatalf("exports %v", f.exporter.exports)
			}
			// The library may call Provision again: same directory, same export.
			again, _, err := f.p.Provision(ctx, opts)
			if err != nil || again.Annotations[AnnExportID] != pv.Annotations[AnnExportID] || again.Annotations[AnnDirectory] != dir {
				t.Fatalf("second Provision: %v %v", again.Annotations, err)
			}
			if err := f.p.Delete(ctx, pv); err != nil {
				t.Fatal(err)
			}
			if len(f.exporter.exports) != 0 {
				t.Fatalf("export left after Delete: %v", f.exporter.exports)
			}
			left := strings.Join(f.leftovers(t), " ")
			switch mode {
			case OnDeleteDelete:
				if left != "" {
					t.Errorf("left %q", left)
				}
			case OnDeleteRetain:
				if left != dir {
					t.Errorf("left %q, want %q", left, dir)
				}
			case OnDeleteArchive:
				if left != storage.ArchivePrefix+dir {
					t.Errorf("left %q, want the archive", left)
				}
			}
			if err := f.p.Delete(ctx, pv); err != nil {
				t.Fatalf("second Delete: %v", err)
			}
		})
	}
}

func TestProvisionBadInputLeavesNothing(t *testing.T) {
	ctx := context.Background()
	block := v1.PersistentVolumeBlock
	tests := []struct {
		name   string
		modify func(*controller.ProvisionOptions)
		want   string
	}{
		{"unknown parameter", func(o *controller.ProvisionOptions) { o.StorageClass.Parameters = map[string]string{"size": "1"} }, "unknown StorageClass parameter"},
		{"bad uid", func(o *controller.ProvisionOptions) { o.StorageClass.Parameters = map[string]string{"uid": "x"} }, "uid"},
		{"bad mode", func(o *controller.ProvisionOptions) { o.StorageClass.Parameters = map[string]string{"mode": "999"} }, "mode"},
		{"bad rootSquash", func(o *controller.ProvisionOptions) {
			o.StorageClass.Parameters = map[string]string{"rootSquash": "maybe"}
		}, "rootSquash"},
		{"block", func(o *controller.ProvisionOptions) { o.PVC.Spec.VolumeMode = &block }, "volumeMode Block"},
		{"selector", func(o *controller.ProvisionOptions) { o.PVC.Spec.Selector = &metav1.LabelSelector{} }, "selector"},
		{"snapshot data source", func(o *controller.ProvisionOptions) {
			o.PVC.Spec.DataSource = &v1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap"}
		}, "dataSource VolumeSnapshot"},
		{"missing clone source", func(o *controller.ProvisionOptions) {
			o.PVC.Spec.DataSource = &v1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "src"}
		}, "clone source claim ns/src"},
		{"clone from another namespace", func(o *controller.ProvisionOptions) {
			o.PVC.Spec.DataSourceRef = &v1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "src", Namespace: ptr.To("other")}
		}, "another namespace"},
		{"bad fsType", func(o *controller.ProvisionOptions) { o.StorageClass.Parameters = map[string]string{"fsType": "btrfs"} }, "fsType"},
		{"unavailable kind", func(o *controller.ProvisionOptions) { o.StorageClass.Parameters = map[string]string{"fsType": "xfs"} }, "xfs volumes are not made"},
		{"zero size", func(o *controller.ProvisionOptions) {
			o.PVC.Spec.Resources.Requests[v1.ResourceStorage] = resource.MustParse("0")
		}, "want more than 0"},
		{"too big", func(o *controller.ProvisionOptions) {
			o.PVC.Spec.Resources.Requests[v1.ResourceStorage] = resource.MustParse("100Ei")
		}, "the export dir has"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, -1)
			opts := claimOptions("ns", "c", "1Mi", nil)
			tc.modify(&opts)
			_, _, err := f.p.Provision(ctx, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
			if left := f.leftovers(t); len(left) != 0 || len(f.exporter.exports) != 0 {
				t.Fatalf("left directories %v and exports %v", left, f.exporter.exports)
			}
			if owners, _ := f.state.Owners(); len(owners) != 0 {
				t.Fatalf("left ledger records %v", owners)
			}
		})
	}
}

func TestProvisionRollsBackFailedExport(t *testing.T) {
	f := newFixture(t, -1)
	f.exporter.failAdd = errors.New("dbus is down")
	_, _, err := f.p.Provision(context.Background(), claimOptions("ns", "c", "1Mi", nil))
	if err == nil || !strings.Contains(err.Error(), "dbus is down") {
		t.Fatalf("error %v", err)
	}
	if left := f.leftovers(t); len(left) != 0 {
		t.Fatalf("directory left behind: %v", left)
	}
	if f.p.reg.count() != 0 {
		t.Fatal("export ID still reserved")
	}
}

func TestMaxExports(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 1)
	if _, _, err := f.p.Provision(ctx, claimOptions("ns", "a", "1Mi", nil)); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.p.Provision(ctx, claimOptions("ns", "b", "1Mi", nil))
	if err == nil || !strings.Contains(err.Error(), "-max-exports") {
		t.Fatalf("error %v", err)
	}
	// The one volume already made can still be provisioned again.
	if _, _, err := f.p.Provision(ctx, claimOptions("ns", "a", "1Mi", nil)); err != nil {
		t.Fatalf("repeat of an existing volume: %v", err)
	}
}

func TestDeleteIgnoresOtherStores(t *testing.T) {
	f := newFixture(t, -1)
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv", Annotations: map[string]string{AnnIdentity: "other", AnnExportID: "1", AnnDirectory: "x"}}}
	var ignored *controller.IgnoredError
	if err := f.p.Delete(context.Background(), pv); !errors.As(err, &ignored) {
		t.Fatalf("Delete of another store's PV: %v, want IgnoredError", err)
	}
	// A tampered directory annotation never reaches the filesystem.
	pv.Annotations[AnnIdentity] = "store-1"
	pv.Annotations[AnnDirectory] = "../../etc"
	if err := f.p.Delete(context.Background(), pv); err == nil || !strings.Contains(err.Error(), "annotation "+AnnDirectory) {
		t.Fatalf("Delete with a path annotation: %v", err)
	}
}
