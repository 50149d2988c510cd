package cephfs

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

var ctx = context.Background()

func spec(name string, size int64) storage.Spec {
	return storage.Spec{Name: name, Kind: storage.CephFS, Size: size, UID: 999, GID: 998, Mode: 0o770 | os.ModeSetgid}
}

// The commands Create runs, word for word: the size is the quota, owner and
// mode as the class says, and an identity confined to the subvolume's path.
func TestCreateCommands(t *testing.T) {
	b, f := newTestBackend(t)
	v, created, err := b.Create(ctx, spec("ns-c-pvc-1", 1<<30))
	if err != nil || !created {
		t.Fatalf("Create: %v %v", created, err)
	}
	want := []string{
		"fs subvolume info cephfs ns-c-pvc-1 --group_name g",
		"fs subvolumegroup create cephfs g",
		"fs subvolume create cephfs ns-c-pvc-1 --size 1073741824 --uid 999 --gid 998 --mode 2770 --group_name g",
		"fs subvolume info cephfs ns-c-pvc-1 --group_name g",
		"auth get-or-create client.g.ns-c-pvc-1 mds allow rw path=/volumes/g/ns-c-pvc-1/uuid-1 mon allow r osd allow rw tag cephfs data=cephfs",
	}
	if got := f.commands(); !slices.Equal(got, want) {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantFSAL := storage.FSAL{Name: storage.FSALCeph, User: "g.ns-c-pvc-1", Secret: fakeKey("client.g.ns-c-pvc-1"), Filesystem: "cephfs"}
	if v.Path != "/volumes/g/ns-c-pvc-1/uuid-1" || v.Size != 1<<30 || v.Kind != storage.CephFS || v.FSAL != wantFSAL {
		t.Fatalf("volume %+v", v)
	}
}

func TestCLIGlobalArgs(t *testing.T) {
	c := &cli{conf: "/etc/ceph/c.conf", user: "nfs-provisioner", keyring: "/etc/ceph/k", timeout: 30 * time.Second}
	got := strings.Join(c.globalArgs(), " ")
	if got != "--conf /etc/ceph/c.conf --id nfs-provisioner --keyring /etc/ceph/k --connect-timeout 30 --format json" {
		t.Fatal(got)
	}
	c.keyring = ""
	if strings.Contains(strings.Join(c.globalArgs(), " "), "--keyring") {
		t.Fatal("a keyring flag without a keyring")
	}
}

// A repeated Create neither creates again (which would reset the owner,
// mode and quota of a volume in use) nor reports created.
func TestCreateIsIdempotent(t *testing.T) {
	b, f := newTestBackend(t)
	v1, _, err := b.Create(ctx, spec("a", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	v2, created, err := b.Create(ctx, spec("a", 2<<20))
	if err != nil || created || v2 != v1 {
		t.Fatalf("second Create: %+v %v %v", v2, created, err)
	}
	if n := f.count("fs subvolume create"); n != 1 {
		t.Fatalf("subvolume create ran %d times", n)
	}
	// A crash between the subvolume and its identity: the next Create
	// makes the identity, and still reports the volume as not its own.
	delete(f.users, "client.g.a")
	if v3, created, err := b.Create(ctx, spec("a", 1<<20)); err != nil || created || v3.FSAL.Secret == "" {
		t.Fatalf("Create after a lost identity: %+v %v %v", v3, created, err)
	}
}

// A failed Create leaves nothing: no subvolume, no identity.
func TestCreateUndoesWhatItMade(t *testing.T) {
	b, f := newTestBackend(t)
	f.fail["auth get-or-create"] = syscall.EACCES
	if _, created, err := b.Create(ctx, spec("a", 1<<20)); err == nil || created {
		t.Fatalf("Create: %v %v", created, err)
	}
	if len(f.subvols) != 0 || len(f.users) != 0 {
		t.Fatalf("left subvolumes %v users %v", f.subvols, f.users)
	}
	// An identity of that name with other caps (made by hand, or broader):
	// refused, and the subvolume this call made is removed.
	f.users["client.g.b"] = map[string]string{"mds": "allow rw", "mon": "allow r", "osd": "allow rw tag cephfs data=cephfs"}
	_, _, err := b.Create(ctx, spec("b", 1<<20))
	if err == nil || !strings.Contains(err.Error(), "other caps") {
		t.Fatalf("Create over a broad identity: %v", err)
	}
	if len(f.subvols) != 0 {
		t.Fatalf("left subvolumes %v", f.subvols)
	}
}

func TestBadInput(t *testing.T) {
	b, f := newTestBackend(t)
	for _, s := range []storage.Spec{
		{Name: "-rf", Kind: storage.CephFS, Size: 1},
		{Name: "a b", Kind: storage.CephFS, Size: 1},
		{Name: "a/b", Kind: storage.CephFS, Size: 1},
		{Name: "archived-x", Kind: storage.CephFS, Size: 1},
		{Name: ".x", Kind: storage.CephFS, Size: 1},
		{Name: "ok", Kind: storage.XFS, Size: 1},
		{Name: "ok", Kind: storage.CephFS, Size: -1},
		{Name: "ok", Kind: storage.CephFS, Size: 1, UID: -1},
	} {
		if _, _, err := b.Create(ctx, s); err == nil {
			t.Errorf("Create %+v accepted", s)
		}
	}
	for _, name := range []string{"--force", "a;b", "", "archived-a"} {
		if _, err := b.Open(ctx, name); err == nil {
			t.Errorf("Open %q accepted", name)
		}
		if err := b.Remove(ctx, name); err == nil {
			t.Errorf("Remove %q accepted", name)
		}
	}
	if len(f.calls) != 0 {
		t.Fatalf("bad input reached the cluster: %v", f.commands())
	}
}

// Open makes nothing, and serves nothing whose identity is gone or reaches
// beyond the volume.
func TestOpenNeverCreatesOrWidens(t *testing.T) {
	b, f := newTestBackend(t)
	if _, err := b.Open(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Open of a missing volume: %v", err)
	}
	v, _, err := b.Create(ctx, spec("a", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	b.cache = newOpenCache()
	if got, err := b.Open(ctx, "a"); err != nil || got != v {
		t.Fatalf("Open: %+v %v", got, err)
	}
	delete(f.users, "client.g.a")
	b.cache = newOpenCache()
	_, err = b.Open(ctx, "a")
	if err == nil || !strings.Contains(err.Error(), "ceph auth get-or-create client.g.a mds 'allow rw path=/volumes/g/a/uuid-1'") {
		t.Fatalf("Open without an identity: %v", err)
	}
	if f.count("auth get-or-create") != 1 || len(f.users) != 0 {
		t.Fatal("Open made an identity")
	}
	f.users["client.g.a"] = map[string]string{"mds": "allow rw path=/", "mon": "allow r", "osd": "allow rw tag cephfs data=cephfs"}
	if _, err := b.Open(ctx, "a"); err == nil || !strings.Contains(err.Error(), "not served") {
		t.Fatalf("Open with caps on the whole filesystem: %v", err)
	}
}

// A reconciliation pass opens every volume: that costs one listing, not
// two commands a volume; a volume gone from the listing is looked up again.
func TestOpenCache(t *testing.T) {
	b, f := newTestBackend(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.cache.now = func() time.Time { return now }
	for _, n := range []string{"a", "b", "c"} {
		if _, _, err := b.Create(ctx, spec(n, 1<<20)); err != nil {
			t.Fatal(err)
		}
	}
	pass := func() int {
		before := len(f.calls)
		for _, n := range []string{"a", "b", "c"} {
			if _, err := b.Open(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		return len(f.calls) - before
	}
	if n := pass(); n != 1 {
		t.Fatalf("first pass ran %d commands: %v", n, f.commands())
	}
	if n := pass(); n != 0 {
		t.Fatalf("a pass within the listing's lifetime ran %d commands", n)
	}
	now = now.Add(time.Minute)
	if n := pass(); n != 1 {
		t.Fatalf("a pass after the listing aged ran %d commands", n)
	}
	now = now.Add(time.Hour)
	if n := pass(); n != 3*2 {
		t.Fatalf("a pass after the entries aged ran %d commands", n)
	}
	// Removed behind the backend's back: the next listing shows it gone.
	delete(f.subvols, "b")
	now = now.Add(time.Minute)
	if _, err := b.Open(ctx, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Open of a volume removed by hand: %v", err)
	}
}

func TestExpand(t *testing.T) {
	b, f := newTestBackend(t)
	if _, _, err := b.Create(ctx, spec("a", 1<<20)); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Expand(ctx, "a", 3<<20, storage.Online); err != nil || got != 3<<20 || f.subvols["a"].quota != 3<<20 {
		t.Fatalf("Expand: %d %v", got, err)
	}
	before := f.count("fs subvolume resize")
	if got, err := b.Expand(ctx, "a", 3<<20, storage.Online); err != nil || got != 3<<20 || f.count("fs subvolume resize") != before {
		t.Fatalf("Expand to the same size: %d %v", got, err)
	}
	if _, err := b.Expand(ctx, "a", 1<<20, storage.Online); !errors.Is(err, storage.ErrUnsupported) {
		t.Fatalf("shrink: %v", err)
	}
	if _, err := b.Expand(ctx, "nope", 1<<20, storage.Online); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Expand of a missing volume: %v", err)
	}
	if v, err := b.Open(ctx, "a"); err != nil || v.Size != 3<<20 {
		t.Fatalf("Open after Expand: %+v %v", v, err)
	}
}

func TestRemove(t *testing.T) {
	b, f := newTestBackend(t)
	if _, _, err := b.Create(ctx, spec("a", 1<<20)); err != nil {
		t.Fatal(err)
	}
	// A snapshot of a clone that was never finished goes with the volume.
	f.subvols["a"].snaps = []string{cloneSnap("x")}
	if err := b.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if len(f.subvols) != 0 || len(f.users) != 0 {
		t.Fatalf("left %v %v", f.subvols, f.users)
	}
	if err := b.Remove(ctx, "a"); err != nil {
		t.Fatalf("Remove of a removed volume: %v", err)
	}
	// Someone else's snapshot: the volume is kept.
	if _, _, err := b.Create(ctx, spec("b", 1<<20)); err != nil {
		t.Fatal(err)
	}
	f.subvols["b"].snaps = []string{"backup-monday"}
	if err := b.Remove(ctx, "b"); err == nil || !strings.Contains(err.Error(), "backup-monday") {
		t.Fatalf("Remove with a foreign snapshot: %v", err)
	}
	if _, ok := f.subvols["b"]; !ok {
		t.Fatal("a volume with a foreign snapshot was removed")
	}
}

func TestClone(t *testing.T) {
	b, f := newTestBackend(t)
	if _, _, err := b.Create(ctx, spec("src", 1<<20)); err != nil {
		t.Fatal(err)
	}
	f.subvols["src"].used = 4096
	f.clonePolls = 3
	var reports [][2]int64
	v, created, err := b.Clone(ctx, "src", spec("dst", 2<<20), func(done, total int64) { reports = append(reports, [2]int64{done, total}) })
	if err != nil || !created {
		t.Fatalf("Clone: %v %v", created, err)
	}
	if v.Size != 2<<20 || v.FSAL.User != "g.dst" || !strings.HasPrefix(v.Path, "/volumes/g/dst/") {
		t.Fatalf("clone %+v", v)
	}
	if len(f.subvols["src"].snaps) != 0 {
		t.Fatalf("snapshot left on the source: %v", f.subvols["src"].snaps)
	}
	if !slices.Equal(reports, [][2]int64{{0, 4096}, {4096, 4096}}) {
		t.Errorf("progress %v", reports)
	}
	if _, created, err := b.Clone(ctx, "src", spec("dst", 2<<20), nil); err != nil || created {
		t.Fatalf("repeated Clone: %v %v", created, err)
	}
	if _, _, err := b.Clone(ctx, "nope", spec("d2", 1<<20), nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Clone of a missing source: %v", err)
	}
}

// A provision that times out leaves the copy going; the retry waits for the
// same copy instead of starting a new one, and Remove cancels it.
func TestCloneOutlivesItsCaller(t *testing.T) {
	b, f := newTestBackend(t)
	if _, _, err := b.Create(ctx, spec("src", 1<<20)); err != nil {
		t.Fatal(err)
	}
	f.clonePolls = 1000
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, created, err := b.Clone(short, "src", spec("dst", 1<<20), nil)
	if !errors.Is(err, context.DeadlineExceeded) || created {
		t.Fatalf("Clone past its deadline: %v %v", created, err)
	}
	if s := f.subvols["dst"]; s == nil || s.state == cloneComplete {
		t.Fatalf("the copy did not go on: %+v", s)
	}
	f.subvols["dst"].pollsLeft = 2
	if _, created, err := b.Clone(ctx, "src", spec("dst", 1<<20), nil); err != nil || created {
		t.Fatalf("retried Clone: %v %v", created, err)
	}
	if n := f.count("fs subvolume snapshot clone"); n != 1 {
		t.Fatalf("%d copies started", n)
	}
	// The claim went away while a copy ran: Remove cancels it.
	f.clonePolls = 1000
	short2, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if _, _, err := b.Clone(short2, "src", spec("dst2", 1<<20), nil); err == nil {
		t.Fatal("no deadline")
	}
	if err := b.Remove(ctx, "dst2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.subvols["dst2"]; ok || f.count("fs clone cancel cephfs dst2") != 1 {
		t.Fatalf("a running copy was not cancelled and removed: %v", f.commands())
	}
	// Its snapshot stays on the source until the source goes.
	if err := b.Remove(ctx, "src"); err != nil {
		t.Fatalf("Remove of a source with a leftover clone snapshot: %v", err)
	}
}

func TestCloneFailureLeavesNothing(t *testing.T) {
	b, f := newTestBackend(t)
	if _, _, err := b.Create(ctx, spec("src", 1<<20)); err != nil {
		t.Fatal(err)
	}
	f.cloneFails = true
	_, created, err := b.Clone(ctx, "src", spec("dst", 1<<20), nil)
	if err == nil || created || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("failed clone: %v %v", created, err)
	}
	if _, ok := f.subvols["dst"]; ok || len(f.subvols["src"].snaps) != 0 || f.users["client.g.dst"] != nil {
		t.Fatalf("left behind: %v snaps %v", mapsKeys(f.subvols), f.subvols["src"].snaps)
	}
}

// Archive copies first and removes the volume only once the copy is
// complete; a retry after a timeout finishes the same archive.
func TestArchive(t *testing.T) {
	b, f := newTestBackend(t)
	if _, _, err := b.Create(ctx, spec("a", 1<<20)); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 3, 4, 5, 6, time.UTC)
	f.clonePolls = 1000
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := b.Archive(short, "a", now); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Archive past its deadline: %v", err)
	}
	if _, ok := f.subvols["a"]; !ok || f.users["client.g.a"] == nil {
		t.Fatal("the volume went before its archive was complete")
	}
	const target = "archived-a-20261201T030405.000000006"
	f.subvols[target].pollsLeft = 2
	got, err := b.Archive(ctx, "a", now.Add(time.Hour))
	if err != nil || got != target {
		t.Fatalf("Archive: %q %v", got, err)
	}
	if _, ok := f.subvols["a"]; ok || f.users["client.g.a"] != nil || f.subvols[target].state != cloneComplete {
		t.Fatalf("after Archive: %v users %v", mapsKeys(f.subvols), mapsKeys(f.users))
	}
	if n := f.count("fs subvolume snapshot clone"); n != 1 {
		t.Fatalf("%d copies", n)
	}
	if names, err := b.List(ctx); err != nil || len(names) != 0 {
		t.Fatalf("List shows the archive: %v %v", names, err)
	}
	if u, err := b.Usage(ctx); err != nil || u.Allocated != 1<<20 {
		t.Fatalf("the archive's quota is not counted: %+v %v", u, err)
	}
	if got, err := b.Archive(ctx, "a", now); err != nil || got != "" {
		t.Fatalf("Archive of an archived volume: %q %v", got, err)
	}
	// Someone else's snapshot: nothing is copied, the volume is kept.
	if _, _, err := b.Create(ctx, spec("b", 1<<20)); err != nil {
		t.Fatal(err)
	}
	f.subvols["b"].snaps = []string{"mine"}
	if _, err := b.Archive(ctx, "b", now); err == nil || !strings.Contains(err.Error(), "mine") {
		t.Fatalf("Archive with a foreign snapshot: %v", err)
	}
	if f.count("fs subvolume snapshot clone") != 1 {
		t.Fatal("a volume that cannot be removed was copied")
	}
}

func TestListAndUsage(t *testing.T) {
	b, f := newTestBackend(t)
	if names, err := b.List(ctx); err != nil || len(names) != 0 {
		t.Fatalf("empty: %v %v", names, err)
	}
	for _, n := range []string{"a", "b"} {
		if _, _, err := b.Create(ctx, spec(n, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	f.subvols["not-ours-but-valid"] = &fakeSubvol{path: "/volumes/g/x/u", quota: 5, state: cloneComplete}
	names, err := b.List(ctx)
	if err != nil || !slices.Equal(names, []string{"a", "b", "not-ours-but-valid"}) {
		t.Fatalf("List: %v %v", names, err)
	}
	u, err := b.Usage(ctx)
	if err != nil || u.Total != 10000 || u.Free != 9000 || u.Allocated != 2005 {
		t.Fatalf("Usage: %+v %v", u, err)
	}
}

func TestUnconfigured(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Available(); !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "-ceph-conf") {
		t.Fatalf("Available: %v", err)
	}
	if names, err := b.List(ctx); err != nil || names != nil {
		t.Fatalf("List: %v %v", names, err)
	}
	if u, err := b.Usage(ctx); err != nil || u != (storage.Usage{}) {
		t.Fatalf("Usage: %+v %v", u, err)
	}
	if _, _, err := b.Create(ctx, spec("a", 1)); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Create: %v", err)
	}
	for _, o := range []Options{{User: "client.admin"}, {Group: "a b"}, {Filesystem: "-x"}, {Timeout: time.Millisecond}} {
		if _, err := New(o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// The mgr cannot keep a subvolume whose name, with its group's, passes 248
// bytes; longer volume names get a shortened subvolume, and List still
// names the volume, so reconciliation matches it with its PV.
func TestLongNames(t *testing.T) {
	b, f := newTestBackend(t)
	long := strings.Repeat("v", storage.MaxNameBytes)
	v, created, err := b.Create(ctx, spec(long, 1<<20))
	if err != nil || !created {
		t.Fatalf("Create: %v %v", created, err)
	}
	sub := b.sub(long)
	if len(sub) != b.maxSub() || !b.shortened(sub) || b.sub(sub) != sub || f.subvols[sub] == nil {
		t.Fatalf("subvolume %q (%d bytes)", sub, len(sub))
	}
	if v.FSAL.User != "g."+sub {
		t.Errorf("user %q", v.FSAL.User)
	}
	other := strings.Repeat("v", storage.MaxNameBytes-1) + "w"
	if b.sub(other) == sub {
		t.Fatal("two long names share a subvolume")
	}
	if names, err := b.List(ctx); err != nil || len(names) != 1 || names[0] != long {
		t.Fatalf("List: %v %v", names, err)
	}
	b.cache = newOpenCache()
	if got, err := b.Open(ctx, long); err != nil || got != v {
		t.Fatalf("Open: %+v %v", got, err)
	}
	if _, _, err := b.Clone(ctx, long, spec(other, 1<<20), nil); err != nil {
		t.Fatalf("Clone to a long name: %v", err)
	}
	if names, _ := b.List(ctx); len(names) != 2 {
		t.Fatalf("List after the clone: %v", names)
	}
	target, err := b.Archive(ctx, long, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || f.subvols[target] == nil || !strings.HasPrefix(target, storage.ArchivePrefix) {
		t.Fatalf("Archive: %q %v", target, err)
	}
	for _, n := range []string{long, other} {
		if err := b.Remove(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.subvols) != 1 || len(f.users) != 0 {
		t.Fatalf("left %v users %v", mapsKeys(f.subvols), mapsKeys(f.users))
	}
	// A shortened-looking subvolume nobody recorded a name for is listed
	// under its own name, and kept.
	f.subvols[b.sub(strings.Repeat("x", 300))] = &fakeSubvol{path: "/volumes/g/x/u", state: cloneComplete}
	if names, err := b.List(ctx); err != nil || len(names) != 1 || names[0] != b.sub(strings.Repeat("x", 300)) {
		t.Fatalf("List of an unrecorded shortened subvolume: %v %v", names, err)
	}
}
