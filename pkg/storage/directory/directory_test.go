package directory

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
)

func newTestStore(t *testing.T) *Backend {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var ctx = context.Background()

// create is Create with the arguments the tests vary.
func create(s *Backend, name string, uid, gid int, mode os.FileMode) (bool, error) {
	_, created, err := s.Create(ctx, storage.Spec{Name: name, Kind: storage.Directory, UID: uid, GID: gid, Mode: mode})
	return created, err
}

func TestStoreCreate(t *testing.T) {
	s := newTestStore(t)
	created, err := create(s, "vol", 1234, 5678, 0o2770|0)
	if err != nil || !created {
		t.Fatalf("Create: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(filepath.Join(s.Root(), "vol"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("owner %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
	if fi.Mode().Perm() != 0o770 {
		t.Errorf("mode %v, want 0770 despite the umask", fi.Mode())
	}
	created, err = create(s, "vol", 0, 0, 0o777)
	if err != nil || created {
		t.Fatalf("second Create: created=%v err=%v, want reuse", created, err)
	}
}

func TestStoreRefusesEscapes(t *testing.T) {
	s := newTestStore(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(s.Root(), "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := create(s, "link", 0, 0, 0o777); err == nil || !strings.Contains(err.Error(), "outside the export dir") {
		t.Fatalf("Create through a symlink: %v", err)
	}
	if err := s.Remove(ctx, "link"); err == nil {
		t.Fatal("Remove followed a symlink out of the store")
	}
	for _, bad := range []string{"../x", ".state", "a/b", ""} {
		if _, err := create(s, bad, 0, 0, 0o777); err == nil {
			t.Errorf("Create(%q) accepted", bad)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("something was made outside the store: %v", entries)
	}
}

func TestStoreRemoveArchive(t *testing.T) {
	s := newTestStore(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, name := range []string{"a", "b", "c"} {
		if _, err := create(s, name, 0, 0, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Root(), name, "data"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	got, err := s.Archive(ctx, "b", now)
	if err != nil || got != "archived-b" {
		t.Fatalf("Archive: %q %v", got, err)
	}
	// A second archive of the same name keeps both.
	if _, err := create(s, "b", 0, 0, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err = s.Archive(ctx, "b", now)
	if err != nil || !strings.HasPrefix(got, "archived-b-2026") {
		t.Fatalf("second Archive: %q %v", got, err)
	}
	if data, err := os.ReadFile(filepath.Join(s.Root(), "archived-b", "data")); err != nil || string(data) != "b" {
		t.Fatalf("first archive lost: %q %v", data, err)
	}
	dirs, err := s.List(ctx)
	if err != nil || len(dirs) != 1 || dirs[0] != "c" {
		t.Fatalf("VolumeDirectories = %v %v, want [c]", dirs, err)
	}
	if empty, _ := s.IsEmpty("c"); empty {
		t.Fatal("c is not empty")
	}
	u, err := s.Usage(ctx)
	if err != nil || u.Free == 0 || u.Total < u.Free || u.Allocated != 0 {
		t.Fatalf("Usage = %+v %v", u, err)
	}
}

func TestCloneCopiesTheTreeWhole(t *testing.T) {
	s := newTestStore(t)
	if _, err := create(s, "src", 999, 999, 0o770); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(s.Root(), "src")
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "a"), filepath.Join(src, "b")); err != nil {
		t.Fatal(err)
	}
	spec := storage.Spec{Name: "dst", Kind: storage.Directory, UID: 999, GID: 999, Mode: 0o770}
	v, created, err := s.Clone(ctx, "src", spec, nil)
	if err != nil || !created || v.Path != filepath.Join(s.Root(), "dst") {
		t.Fatalf("Clone: %+v %v %v", v, created, err)
	}
	var a, b syscall.Stat_t
	if err := syscall.Stat(filepath.Join(v.Path, "a"), &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(filepath.Join(v.Path, "b"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Mode&0o777 != 0o640 {
		t.Fatalf("hard link or mode lost: %+v %+v", a, b)
	}
	if data, _ := os.ReadFile(filepath.Join(v.Path, "a")); string(data) != "data" {
		t.Fatalf("data %q", data)
	}
	// A repeated call finds the finished clone; no hidden copy is left.
	if _, created, err := s.Clone(ctx, "src", spec, nil); err != nil || created {
		t.Fatalf("second Clone: %v %v", created, err)
	}
	names, _ := s.List(ctx)
	entries, _ := os.ReadDir(s.Root())
	if len(names) != 2 || len(entries) != 2 {
		t.Fatalf("volumes %v, entries %d: a hidden copy was left", names, len(entries))
	}
	if _, _, err := s.Clone(ctx, "missing", storage.Spec{Name: "x", Kind: storage.Directory}, nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("clone of a missing source: %v", err)
	}
}
