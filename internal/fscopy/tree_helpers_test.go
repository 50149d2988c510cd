package fscopy

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// meta is what CopyTree promises to keep of one entry.
type meta struct {
	Mode         uint32 // type and permission bits incl. setuid/setgid/sticky
	UID, GID     uint32
	Size         int64
	Rdev         uint64
	Atime, Mtime unix.Timespec
	Target       string            // symlinks
	Xattrs       map[string]string // every name the kernel lists, as root
	ino          uint64            // hard-link grouping, not compared
	blocks       int64
}

// snapshot records meta of every entry under root (root itself as "."),
// without following symlinks and without changing access times, except a
// symlink's: readlink updates it, as the copy's own readlink does. Under
// relatime only the first readlink after a change does, so a test takes a
// snapshot of its source once before the one it compares with (settle).
func snapshot(t testing.TB, root string) map[string]meta {
	t.Helper()
	out := map[string]meta{}
	var walk func(rel string)
	walk = func(rel string) {
		p := filepath.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		m := meta{
			Mode: st.Mode, UID: st.Uid, GID: st.Gid, Rdev: st.Rdev,
			Atime: st.Atim, Mtime: st.Mtim, Xattrs: xattrs(t, p), ino: st.Ino, blocks: st.Blocks,
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFLNK:
			m.Size = st.Size
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			// After the lstat: readlink updates the link's access time
			// (there is no O_NOATIME for it).
			target, err := os.Readlink(p)
			if err != nil {
				t.Fatal(err)
			}
			m.Target = target
		}
		out[rel] = m
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return
		}
		d, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOATIME|unix.O_NOFOLLOW, 0)
		if err != nil {
			t.Fatal(err)
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			walk(filepath.Join(rel, n))
		}
	}
	walk(".")
	return out
}

func xattrs(t testing.TB, path string) map[string]string {
	t.Helper()
	list, err := readXattr(func(b []byte) (int, error) { return unix.Llistxattr(path, b) })
	if err != nil {
		t.Fatalf("llistxattr %s: %v", path, err)
	}
	m := map[string]string{}
	for _, name := range strings.Split(string(list), "\x00") {
		if name == "" || xfsACLAlias(name) { // XFS's second name of the ACLs, not compared
			continue
		}
		v, err := readXattr(func(b []byte) (int, error) { return unix.Lgetxattr(path, name, b) })
		if err != nil {
			t.Fatalf("lgetxattr %s %s: %v", path, name, err)
		}
		m[name] = string(v)
	}
	return m
}

// assertSameTree compares two snapshots entry by entry, the hard-link
// structure, and the contents and sparseness of regular files.
func assertSameTree(t testing.TB, dstRoot string, dst map[string]meta, srcRoot string, src map[string]meta) {
	t.Helper()
	for _, rel := range slices.Sorted(mapKeys(src)) {
		s := src[rel]
		d, ok := dst[rel]
		if !ok {
			t.Errorf("%s: missing in the copy", rel)
			continue
		}
		dc, sc := d, s
		dc.ino, dc.blocks, sc.ino, sc.blocks = 0, 0, 0, 0
		if got, want := fmt.Sprintf("%+v", dc), fmt.Sprintf("%+v", sc); got != want {
			t.Errorf("%s:\n got %s\nwant %s", rel, got, want)
		}
		if s.Mode&unix.S_IFMT == unix.S_IFREG {
			if !sameContents(t, filepath.Join(srcRoot, rel), filepath.Join(dstRoot, rel)) {
				t.Errorf("%s: contents differ", rel)
			}
			// One 4 KiB block of slack: ext4 keeps xattrs that do not fit
			// in the inode in a block of their own, counted in st_blocks;
			// XFS does not count them.
			if d.blocks > s.blocks+8 {
				t.Errorf("%s: %d blocks, more than the source's %d", rel, d.blocks, s.blocks)
			}
		}
	}
	for rel := range dst {
		if _, ok := src[rel]; !ok {
			t.Errorf("%s: in the copy, not in the source", rel)
		}
	}
	// Names sharing an inode in src share one in dst, and only those.
	for a, sa := range src {
		for b, sb := range src {
			if a < b && sa.Mode&unix.S_IFMT != unix.S_IFDIR && sb.Mode&unix.S_IFMT != unix.S_IFDIR {
				if (sa.ino == sb.ino) != (dst[a].ino == dst[b].ino) {
					t.Errorf("%s and %s: hard-linked in the source %v, in the copy %v", a, b, sa.ino == sb.ino, dst[a].ino == dst[b].ino)
				}
			}
		}
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// aclBlob encodes a POSIX ACL as the kernel stores it in
// system.posix_acl_access/default: version 2, then (tag, perm, id) entries.
func aclBlob(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclMask     = 0x10
	aclOther    = 0x20
	aclNoID     = 0xffffffff
)

// tb builds a source tree; every step fails the test on error.
type tb struct {
	t    testing.TB
	root string
}

func (b tb) p(rel string) string { return filepath.Join(b.root, rel) }

func (b tb) check(err error) {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
}

func (b tb) dir(rel string, mode os.FileMode, uid, gid int) {
	b.t.Helper()
	b.check(os.Mkdir(b.p(rel), 0o700))
	b.own(rel, uid, gid, mode)
}

func (b tb) file(rel, data string, mode os.FileMode, uid, gid int) {
	b.t.Helper()
	b.check(os.WriteFile(b.p(rel), []byte(data), 0o600))
	b.own(rel, uid, gid, mode)
}

// own sets owner then mode: chown clears setuid/setgid.
func (b tb) own(rel string, uid, gid int, mode os.FileMode) {
	b.t.Helper()
	b.check(os.Lchown(b.p(rel), uid, gid))
	b.check(unix.Chmod(b.p(rel), uint32(mode)))
}

func (b tb) symlink(rel, target string, uid, gid int) {
	b.t.Helper()
	b.check(os.Symlink(target, b.p(rel)))
	b.check(os.Lchown(b.p(rel), uid, gid))
}

func (b tb) xattr(rel, name, value string) {
	b.t.Helper()
	b.check(unix.Lsetxattr(b.p(rel), name, []byte(value), 0))
}

// times gives every entry under root distinct access and modification times
// in nanoseconds, directories after their contents.
func (b tb) times() {
	b.t.Helper()
	i := int64(0)
	var walk func(p string)
	walk = func(p string) {
		fi, err := os.Lstat(p)
		b.check(err)
		if fi.IsDir() {
			d, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOATIME, 0)
			b.check(err)
			names, err := d.Readdirnames(-1)
			d.Close()
			b.check(err)
			slices.Sort(names)
			for _, n := range names {
				walk(filepath.Join(p, n))
			}
		}
		i++
		ts := []unix.Timespec{
			{Sec: 981_173_106 + i*1000, Nsec: 100 + i},   // 2001
			{Sec: 1_012_709_106 + i*1000, Nsec: 200 + i}, // 2002
		}
		b.check(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	walk(b.root)
}

// buildTree makes a source tree with every kind of entry and attribute
// CopyTree promises to keep, plus symlinks that point out of the tree at
// outside (a directory with a file "secret"). It returns the expected total
// progress (sizes of regular files, each inode once).
func buildTree(t testing.TB, root, outside string) int64 {
	b := tb{t, root}
	b.dir("a", 0o755, 1001, 1002)
	b.file("a/file.txt", "hello", 0o644, 1001, 1002)
	b.file("a/empty", "", 0o600, 0, 0)
	b.file("a/setuid", "#!/bin/true\n", 0o4755, 0, 0)
	b.file("a/setgid", "x", 0o2750, 1001, 1002)
	b.file("a/nothing", "no permissions at all", 0, 1001, 1002)
	writeSparse(t, b.p("a/sparse"), 16<<20, []extent{{0, 4096}, {8 << 20, 64 << 10}})
	b.own("a/sparse", 1003, 1004, 0o640)
	b.dir("sticky", 0o1777, 0, 0)
	b.file("sticky/f", "in sticky", 0o666, 1005, 1005)
	b.dir("ro", 0o555, 1001, 1002)
	b.dir("ro/sub", 0o500, 1001, 1002)
	b.file("ro/sub/inner", "read-only dir contents", 0o444, 1001, 1002)
	b.dir("d1", 0o755, 0, 0)
	b.dir("d1/d2", 0o711, 0, 0)
	b.dir("d1/d2/d3", 0o700, 7, 7)
	b.file("d1/d2/d3/deep", "deep", 0o644, 7, 7)

	// Hard links: three names of one inode across directories, and a second
	// inode with two names.
	b.file("a/hl", "linked data", 0o640, 1001, 1002)
	b.check(os.Link(b.p("a/hl"), b.p("d1/hl2")))
	b.check(os.Link(b.p("a/hl"), b.p("d1/d2/d3/hl3")))
	b.file("pair1", "pair", 0o644, 0, 0)
	b.check(os.Link(b.p("pair1"), b.p("pair2")))

	// Symlinks: relative, dangling, and two pointing out of the tree; one
	// with an owner of its own.
	b.symlink("rel", "a/file.txt", 0, 0)
	b.symlink("dangling", "does/not/exist", 1001, 1002)
	b.symlink("abs-out", filepath.Join(outside, "secret"), 0, 0)
	b.symlink("dir-out", outside, 0, 0)
	b.symlink("a/up-out", "../../"+filepath.Base(outside), 0, 0)

	// Special files.
	b.check(unix.Mknod(b.p("fifo"), unix.S_IFIFO|0o620, 0))
	b.own("fifo", 1001, 1002, 0o620)
	b.check(unix.Mknod(b.p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	b.check(unix.Mknod(b.p("sock"), unix.S_IFSOCK|0o640, 0))

	// Extended attributes of every namespace, on files, directories and a
	// symlink, and POSIX ACLs.
	b.xattr("a/file.txt", "user.color", "blue")
	b.xattr("a/file.txt", "trusted.provisioner", "t-value")
	b.xattr("a/file.txt", "security.fscopy-test", "s-value")
	b.xattr("a", "user.dir", "d")
	b.xattr("rel", "trusted.on-link", "l")
	b.xattr("fifo", "trusted.on-fifo", "f")
	b.xattr("a/sparse", "user.big", strings.Repeat("v", 3000))
	b.xattr("a/setgid", "system.posix_acl_access", string(aclBlob(
		[3]uint32{aclUserObj, 6, aclNoID}, [3]uint32{aclUser, 4, 1500},
		[3]uint32{aclGroupObj, 4, aclNoID}, [3]uint32{aclMask, 6, aclNoID}, [3]uint32{aclOther, 0, aclNoID})))
	b.check(unix.Chmod(b.p("a/setgid"), 0o2760)) // mode after ACL: group bits are the mask
	b.xattr("d1", "system.posix_acl_default", string(aclBlob(
		[3]uint32{aclUserObj, 7, aclNoID}, [3]uint32{aclUser, 5, 1500},
		[3]uint32{aclGroupObj, 5, aclNoID}, [3]uint32{aclMask, 5, aclNoID}, [3]uint32{aclOther, 5, aclNoID})))
	b.xattr(".", "user.root", "r")
	b.own(".", 1234, 5678, 0o2751)

	b.times()
	return int64(len("hello") + len("#!/bin/true\n") + 1 + len("no permissions at all") + 16<<20 +
		len("in sticky") + len("read-only dir contents") + len("deep") + len("linked data") + len("pair"))
}

// makeOutside makes the directory symlinks in the source point at, holding a
// secret that must never be copied.
func makeOutside(t testing.TB) (dir string, secret []byte) {
	dir = filepath.Join(t.TempDir(), "outside")
	secret = []byte("SECRET-OUTSIDE-THE-TREE")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, secret
}

// assertNoSecret checks that no regular file under root holds secret.
func assertNoSecret(t testing.TB, root string, secret []byte) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && fileContains(t, p, secret) {
			t.Errorf("%s holds the secret from outside the source", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
