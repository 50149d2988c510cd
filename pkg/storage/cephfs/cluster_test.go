package cephfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework/cephbed"
)

// The tests below run the backend against a real Ceph cluster (the test
// bed, shared by this package's tests): they check what the fake of
// fake_test.go assumes of the mgr volumes module (its errnos, states and
// answers) where it matters most. Skipped under -short.
func TestMain(m *testing.M) { os.Exit(cephbed.Main(m)) }

// realBackend is a backend as admin on the bed, in a group of its own.
func realBackend(t *testing.T, group string) (*Backend, *cephbed.Cluster) {
	t.Helper()
	bed := cephbed.Shared(t)
	b, err := New(Options{Conf: bed.ConfPath(), Keyring: bed.AdminKeyring(), Group: group, PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Available(); err != nil {
		t.Fatal(err)
	}
	return b, bed
}

func realCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestRealLifecycle(t *testing.T) {
	b, bed := realBackend(t, "real-lifecycle")
	ctx := realCtx(t)
	if names, err := b.List(ctx); err != nil || len(names) != 0 {
		t.Fatalf("List before the group exists: %v %v", names, err)
	}
	if _, err := b.Open(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Open of a missing volume: %v", err)
	}
	start := time.Now()
	v, created, err := b.Create(ctx, spec("a", 8<<20))
	if err != nil || !created {
		t.Fatalf("Create: %v %v", created, err)
	}
	t.Logf("FIGURE CephFS backend Create (group made too): %s", time.Since(start).Round(time.Millisecond))
	if v.Size != 8<<20 || !strings.HasPrefix(v.Path, "/volumes/real-lifecycle/a/") || v.FSAL.Secret == "" {
		t.Fatalf("volume %+v", v)
	}
	mnt := bed.MountFuse(t, "/", cephbed.Client{})
	fi, err := os.Stat(filepath.Join(mnt, v.Path))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 999 || st.Gid != 998 || fi.Mode().Perm() != 0o770 || fi.Mode()&os.ModeSetgid == 0 {
		t.Fatalf("root %v %d:%d", fi.Mode(), st.Uid, st.Gid)
	}
	// A repeated Create changes nothing: not the mode someone set since.
	if err := os.Chmod(filepath.Join(mnt, v.Path), 0o700); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if again, created, err := b.Create(ctx, spec("a", 16<<20)); err != nil || created || again.Size != 8<<20 || again.Path != v.Path {
		t.Fatalf("repeated Create: %+v %v %v", again, created, err)
	}
	t.Logf("FIGURE CephFS backend repeated Create: %s", time.Since(start).Round(time.Millisecond))
	if fi, _ := os.Stat(filepath.Join(mnt, v.Path)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("a repeated Create reset the mode to %v", fi.Mode())
	}
	b.cache = newOpenCache()
	start = time.Now()
	if got, err := b.Open(ctx, "a"); err != nil || got != v {
		t.Fatalf("Open: %+v %v", got, err)
	}
	t.Logf("FIGURE CephFS backend Open, uncached (info + auth get): %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if grown, err := b.Expand(ctx, "a", 24<<20, storage.Online); err != nil || grown != 24<<20 {
		t.Fatalf("Expand: %d %v", grown, err)
	}
	t.Logf("FIGURE CephFS backend Expand: %s", time.Since(start).Round(time.Millisecond))
	if _, err := b.Expand(ctx, "a", 8<<20, storage.Online); !errors.Is(err, storage.ErrUnsupported) {
		t.Fatalf("shrink: %v", err)
	}
	u, err := b.Usage(ctx)
	if err != nil || u.Total <= 0 || u.Free <= 0 || u.Allocated != 24<<20 {
		t.Fatalf("Usage: %+v %v", u, err)
	}
	// Someone's own snapshot keeps the volume from being removed.
	if _, err := bed.Ceph(ctx, "fs", "subvolume", "snapshot", "create", cephbed.FSName, "a", "backup", "--group_name", "real-lifecycle"); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, "a"); err == nil || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("Remove with a foreign snapshot: %v", err)
	}
	if _, err := bed.Ceph(ctx, "fs", "subvolume", "snapshot", "rm", cephbed.FSName, "a", "backup", "--group_name", "real-lifecycle"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := b.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE CephFS backend Remove: %s", time.Since(start).Round(time.Millisecond))
	if err := b.Remove(ctx, "a"); err != nil {
		t.Fatalf("Remove again: %v", err)
	}
	if _, err := bed.Ceph(ctx, "auth", "get", "client.real-lifecycle.a"); err == nil {
		t.Fatal("the identity outlived its volume")
	}
}

// Removing a volume while its clone is still being copied cancels the copy;
// a clone's snapshot left on its source goes with the source.
func TestRealCloneCancelledByRemove(t *testing.T) {
	b, _ := realBackend(t, "real-clone")
	ctx := realCtx(t)
	if _, _, err := b.Create(ctx, spec("src", 64<<20)); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	_, created, err := b.Clone(short, "src", spec("dst", 64<<20), nil)
	cancel()
	if err == nil || created {
		t.Fatalf("Clone past its deadline: %v %v", created, err)
	}
	// Whatever state the copy reached (it may even have started or not),
	// Remove of the destination and of the source leaves nothing.
	if err := b.Remove(ctx, "dst"); err != nil {
		t.Fatalf("Remove of a clone being made: %v", err)
	}
	if err := b.Remove(ctx, "src"); err != nil {
		t.Fatalf("Remove of a source with a clone's snapshot: %v", err)
	}
	if names, err := b.listAll(ctx); err != nil || len(names) != 0 {
		t.Fatalf("left: %v %v", names, err)
	}
}

// The longest volume name there is gets a shortened subvolume (the mgr
// cannot keep a longer one) and an identity the cluster takes; List names
// the volume. test/e2e serves such a volume over NFS.
func TestRealLongName(t *testing.T) {
	b, _ := realBackend(t, "real-long")
	ctx := realCtx(t)
	name := strings.Repeat("n", storage.MaxNameBytes)
	v, _, err := b.Create(ctx, spec(name, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if v.FSAL.User != "real-long."+b.sub(name) || len(b.sub(name)) != b.maxSub() {
		t.Fatalf("user %q", v.FSAL.User)
	}
	if names, err := b.List(ctx); err != nil || len(names) != 1 || names[0] != name {
		t.Fatalf("List: %v %v", names, err)
	}
	b.cache = newOpenCache()
	if got, err := b.Open(ctx, name); err != nil || got != v {
		t.Fatalf("Open: %+v %v", got, err)
	}
	got, err := b.Archive(ctx, name, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || !strings.HasPrefix(got, storage.ArchivePrefix) {
		t.Fatalf("Archive: %q %v", got, err)
	}
	if names, err := b.List(ctx); err != nil || len(names) != 0 {
		t.Fatalf("List after archiving: %v %v", names, err)
	}
}
