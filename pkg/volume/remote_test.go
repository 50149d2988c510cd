package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// remoteBackend stands in for a backend whose volumes live in a cluster
// (CephFS): served through an FSAL of their own, listed over the network.
// It is only as real as these tests of pkg/volume's own logic need;
// test/cephfs proves the real backend.
type remoteBackend struct {
	mu        sync.Mutex
	vols      map[string]storage.Volume
	listErr   error
	available error
}

func newRemoteBackend() *remoteBackend { return &remoteBackend{vols: map[string]storage.Volume{}} }

func (r *remoteBackend) Kinds() []storage.Kind { return []storage.Kind{storage.CephFS} }
func (r *remoteBackend) Available() error      { return r.available }

func (r *remoteBackend) vol(name string, size int64) storage.Volume {
	return storage.Volume{Name: name, Kind: storage.CephFS, Path: "/volumes/g/" + name + "/uuid", Size: size,
		FSAL: storage.FSAL{Name: storage.FSALCeph, User: "g." + name, Secret: "AQBsecret==", Filesystem: "cephfs"}}
}

func (r *remoteBackend) Create(_ context.Context, s storage.Spec) (storage.Volume, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.vols[s.Name]; ok {
		return v, false, nil
	}
	r.vols[s.Name] = r.vol(s.Name, s.Size)
	return r.vols[s.Name], true, nil
}

func (r *remoteBackend) Open(_ context.Context, name string) (storage.Volume, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.vols[name]; ok {
		return v, nil
	}
	return storage.Volume{}, fmt.Errorf("%s: %w", name, storage.ErrNotFound)
}

func (r *remoteBackend) Close(context.Context, string) error { return nil }

func (r *remoteBackend) Remove(_ context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.vols, name)
	return nil
}

func (r *remoteBackend) Archive(context.Context, string, time.Time) (string, error) {
	return "", storage.ErrUnsupported
}

func (r *remoteBackend) List(context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.listErr != nil {
		return nil, r.listErr
	}
	var names []string
	for n := range r.vols {
		names = append(names, n)
	}
	return names, nil
}

func (r *remoteBackend) Usage(context.Context) (storage.Usage, error) {
	return storage.Usage{Total: 1 << 40, Free: 1 << 40}, nil
}

func (r *remoteBackend) Expand(context.Context, string, int64, storage.ExpandMode) (int64, error) {
	return 0, storage.ErrUnsupported
}

func (r *remoteBackend) Clone(context.Context, string, storage.Spec, storage.Progress) (storage.Volume, bool, error) {
	return storage.Volume{}, false, storage.ErrUnsupported
}

func (f *fixture) withRemote(t *testing.T, r *remoteBackend) {
	t.Helper()
	p, err := New(Options{Identity: "store-1", Backends: []storage.Backend{f.store, r}, State: f.state, Exporter: f.exporter,
		Server: "10.0.0.7", MaxExports: -1, Client: f.client, Recorder: f.recorder, Clock: f.clock, IntentGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	if _, err := f.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A CephFS volume is exported through the FSAL its backend names, with the
// key, and its kind is recorded on the PV.
func TestRemoteVolumeExportedThroughItsFSAL(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	r := newRemoteBackend()
	f.withRemote(t, r)
	pv, _, err := f.p.Provision(ctx, claimOptions("ns", "c", "1Gi", map[string]string{"fsType": "cephfs"}))
	if err != nil {
		t.Fatal(err)
	}
	if pv.Annotations[AnnKind] != string(storage.CephFS) {
		t.Errorf("kind annotation %q", pv.Annotations[AnnKind])
	}
	e := f.exporter.exports[uint16(mustAtoi(t, pv.Annotations[AnnExportID]))]
	want := ganesha.FSAL{Name: ganesha.FSALCeph, UserID: "g." + pv.Annotations[AnnDirectory], Secret: "AQBsecret==", Filesystem: "cephfs"}
	if e.FSAL != want || e.Path != r.vol(pv.Annotations[AnnDirectory], 0).Path {
		t.Fatalf("export %+v, want FSAL %+v", e, want)
	}
	// Reconciliation finds the live export as it wants it: nothing changes.
	if _, err := f.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyExported != 1 || res.Converged+res.Reexported+res.Missing != 0 {
		t.Fatalf("reconcile %+v", res)
	}
}

// A cluster that does not answer stops neither reconciliation nor the other
// kinds, and nothing of it is reaped meanwhile.
func TestUnreachableRemoteBackendStopsNothingAndReapsNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	r := newRemoteBackend()
	f.withRemote(t, r)
	opts := claimOptions("ns", "c", "1Gi", map[string]string{"fsType": "cephfs"})
	pv, _, err := f.p.Provision(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	name := pv.Annotations[AnnDirectory]
	// As if the process died before the PV was saved, long ago, and the
	// claim is gone: an unfinished provision nobody received.
	o, _, _ := f.state.Owner(name)
	o.Provisioning = true
	if err := f.state.SetOwner(name, o); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(time.Hour)
	r.listErr = errors.New("ceph: connection timed out")
	if _, err := f.p.Reconcile(ctx); err != nil {
		t.Fatalf("a pass failed because one backend could not list: %v", err)
	}
	if _, ok, _ := f.state.Owner(name); !ok {
		t.Fatal("the ledger record of a volume in the unreachable cluster was dropped")
	}
	if _, err := r.Open(ctx, name); err != nil {
		t.Fatalf("the volume in the unreachable cluster was removed: %v", err)
	}
	if !f.p.Reconciled() {
		t.Fatal("not reconciled")
	}
	if _, _, err := f.p.Provision(ctx, claimOptions("ns", "d", "1Mi", nil)); err != nil {
		t.Fatalf("a directory claim while the cluster is away: %v", err)
	}
	// Back: the unfinished provision is reaped as usual.
	r.listErr = nil
	res, err := f.p.Reconcile(ctx)
	if err != nil || res.ReapedIntents != 1 {
		t.Fatalf("after the cluster is back: %+v %v", res, err)
	}
}

// Without its configuration the kind is unavailable, and a claim for it
// says what is missing.
func TestUnavailableRemoteBackend(t *testing.T) {
	f := newFixture(t, -1)
	r := newRemoteBackend()
	r.available = fmt.Errorf("%w: CephFS volumes need -ceph-conf", storage.ErrUnavailable)
	f.withRemote(t, r)
	_, _, err := f.p.Provision(context.Background(), claimOptions("ns", "c", "1Gi", map[string]string{"fsType": "cephfs"}))
	if err == nil || !strings.Contains(err.Error(), "-ceph-conf") {
		t.Fatalf("error %v, want one naming -ceph-conf", err)
	}
	if owners, _ := f.state.Owners(); len(owners) != 0 {
		t.Fatalf("ledger records left: %v", owners)
	}
}
