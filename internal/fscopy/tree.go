package fscopy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// TreeOptions tunes CopyTree. The zero value is ready to use.
type TreeOptions struct {
	// Progress, if not nil, is called with the bytes of regular files done so
	// far (holes count as done) and the total size of the source's regular
	// files (each hard-linked inode once), measured before the copy starts.
	// It is called at most once per ProgressInterval, and once at the end
	// with done == total.
	Progress func(done, total int64)
	// ProgressInterval bounds the rate of Progress calls. Default: 1s.
	ProgressInterval time.Duration

	// beforeOpen, set only by this package's tests, runs after an entry was
	// lstat'ed and before it is opened or read, so a test can swap the entry
	// at exactly the moment a race would.
	beforeOpen func(rel string)
}

// Stats counts what CopyTree made.
type Stats struct {
	Dirs     int64 // directories, the root not counted
	Files    int64 // regular files copied or reflinked (each inode once)
	Symlinks int64
	// HardLinks counts the extra names of inodes with several names in the
	// source, made as hard links to the first copy.
	HardLinks int64
	// Specials counts FIFOs, sockets and device nodes recreated with mknod.
	Specials int64
	// Reflinked counts the Files cloned by FICLONE instead of copied.
	Reflinked int64
	// Bytes is the total size of the Files; DataBytes what was actually
	// written (holes and reflinks excluded).
	Bytes, DataBytes int64
	// SkippedDevices counts device nodes that could not be made because the
	// caller lacks CAP_MKNOD; SkippedPaths names the first 100 of them.
	SkippedDevices int64
	SkippedPaths   []string
	// Vanished counts entries removed from the source between being listed
	// and being copied (the source was live).
	Vanished int64
}

const maxSkippedPaths = 100

// maxRetries bounds how often one entry is looked at again when it keeps
// changing under the copy.
const maxRetries = 3

// CopyTree copies the directory tree src into dst, which must be an existing,
// empty directory; dst itself gets src's owner, mode, times and extended
// attributes at the end.
//
// Preserved: regular files (reflinked where the filesystem can, else copied
// sparse-aware), directories, symlinks (copied as links, never followed), hard
// links within the tree (by device and inode), FIFOs, sockets and device nodes
// (mknod; device nodes are skipped and counted in Stats.SkippedDevices when
// the caller lacks CAP_MKNOD), owners, modes with setuid/setgid/sticky,
// access and modification times in nanoseconds (a directory's after its
// contents), and extended attributes: user.*, security.*, trusted.* and POSIX
// ACLs (system.posix_acl_*).
//
// Not preserved: change and birth times (the kernel sets them), inode flags
// (chattr: immutable, append-only, nodump), the source's own symlink access
// times (readlink updates them and has no O_NOATIME; the copy gets the value
// from before), hard links to inodes outside the
// tree (each becomes its own file), trusted.* when the caller lacks
// CAP_SYS_ADMIN (the kernel hides them), and a sparse file's unwritten
// (preallocated) extents, which are holes to SEEK_DATA. A mount point inside
// src is crossed like any directory.
//
// It needs root's powers over files (CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE)
// unless every owner is the caller; an attribute it cannot set is an error,
// not a silent loss.
//
// The copy is not crash-consistent: on a live source each file is copied as
// it is at the moment it is reached. Entries that appear after their directory
// was listed are missed, entries removed meanwhile are counted in
// Stats.Vanished, an entry whose type changes between lstat and open is looked
// at again. src must not contain dst.
//
// No symlink in src is followed, not even one swapped in while the copy runs.
// On failure, cancellation of ctx included, everything CopyTree made inside
// dst is removed again (dst was empty, so it is all ours); dst itself is left.
func CopyTree(ctx context.Context, dst, src string, opts TreeOptions) (stats Stats, err error) {
	if err := ctx.Err(); err != nil {
		return stats, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	sfd, sst, err := openDir(unix.AT_FDCWD, src, nil)
	if err != nil {
		return stats, fmt.Errorf("open source %s: %w", src, notDir(err))
	}
	defer unix.Close(sfd)
	dfd, dst0, err := openDir(unix.AT_FDCWD, dst, nil)
	if err != nil {
		return stats, fmt.Errorf("open destination %s: %w", dst, notDir(err))
	}
	defer unix.Close(dfd)
	if names, err := readNames(dfd); err != nil {
		return stats, fmt.Errorf("read destination %s: %w", dst, err)
	} else if len(names) > 0 {
		return stats, fmt.Errorf("destination %s is not empty", dst)
	}

	c := &treeCopier{
		ctx:     ctx,
		opts:    opts,
		dstRoot: dfd,
		dstIno:  devIno{dst0.Dev, dst0.Ino},
		links:   map[devIno]string{},
	}
	if sameInode(sst, dst0) {
		return stats, fmt.Errorf("source and destination are the same directory %s", src)
	}
	total, err := c.measure(sfd)
	if err != nil {
		return stats, fmt.Errorf("measure %s: %w", src, err)
	}
	interval := opts.ProgressInterval
	if interval <= 0 {
		interval = defaultProgressInterval
	}
	c.prog = newProgress(opts.Progress, total, interval)

	defer func() {
		if err != nil {
			err = errors.Join(err, emptyDir(dst))
			stats = c.stats
		}
	}()
	if err := c.copyDir(dfd, sfd, ""); err != nil {
		return c.stats, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := setMeta(fdNode(dfd), fdNode(sfd), sst, false); err != nil {
		return c.stats, fmt.Errorf("copy %s to %s: root: %w", src, dst, err)
	}
	// Through /proc/self/fd the kernel reaches dst's own inode, whatever
	// happened to the path meanwhile.
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(dfd), []unix.Timespec{sst.Atim, sst.Mtim}, 0); err != nil {
		return c.stats, fmt.Errorf("copy %s to %s: root: set times: %w", src, dst, err)
	}
	// One syncfs instead of an fsync per file: a tree has many small files.
	if err := unix.Syncfs(dfd); err != nil {
		return c.stats, fmt.Errorf("sync %s: %w", dst, err)
	}
	c.prog.finish()
	return c.stats, nil
}

type devIno struct{ dev, ino uint64 }

type treeCopier struct {
	ctx     context.Context
	opts    TreeOptions
	prog    *progress
	stats   Stats
	dstRoot int
	dstIno  devIno
	// links maps a source inode with several names to the path, relative to
	// dstRoot, of its first copy.
	links map[devIno]string
}

func notDir(err error) error {
	if err == errChanged {
		return errors.New("not a directory, or a symlink")
	}
	return err
}

// measure sums the sizes of the regular files under the directory open as
// dir, counting an inode with several names once. It walks exactly as the copy
// does (no symlink followed) and refuses a source that contains dst before
// anything is written.
func (c *treeCopier) measure(dir int) (int64, error) {
	seen := map[devIno]bool{}
	var walk func(dir int) (int64, error)
	walk = func(dir int) (int64, error) {
		names, err := readNames(dir)
		if err != nil {
			return 0, err
		}
		var sum int64
		for _, name := range names {
			if err := c.ctx.Err(); err != nil {
				return 0, err
			}
			var st unix.Stat_t
			if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if err == unix.ENOENT {
					continue // a live source: counted when copied, if at all
				}
				return 0, fmt.Errorf("lstat %s: %w", name, err)
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				if st.Nlink > 1 {
					key := devIno{st.Dev, st.Ino}
					if seen[key] {
						continue
					}
					seen[key] = true
				}
				sum += st.Size
			case unix.S_IFDIR:
				if (devIno{st.Dev, st.Ino}) == c.dstIno {
					return 0, errors.New("the destination is inside the source")
				}
				sub, _, err := openDir(dir, name, &st)
				if err == errChanged || err == unix.ENOENT {
					continue
				}
				if err != nil {
					return 0, fmt.Errorf("open %s: %w", name, err)
				}
				n, err := walk(sub)
				unix.Close(sub)
				if err != nil {
					return 0, fmt.Errorf("%s/%w", name, err)
				}
				sum += n
			}
		}
		return sum, nil
	}
	return walk(dir)
}

// copyDir copies the entries of the source directory open as sdir into the
// destination directory open as ddir; rel is their path below the roots.
func (c *treeCopier) copyDir(ddir, sdir int, rel string) error {
	names, err := readNames(sdir)
	if err != nil {
		return fmt.Errorf("read %s: %w", displayPath(rel), err)
	}
	slices.Sort(names) // a stable order makes failures reproducible
	for _, name := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if err := c.copyEntry(ddir, sdir, path.Join(rel, name), name); err != nil {
			return err
		}
	}
	return nil
}

// copyEntry copies one entry, looking at it again (up to maxRetries times)
// when it changes between its lstat and its open.
func (c *treeCopier) copyEntry(ddir, sdir int, rel, name string) error {
	for attempt := 0; ; attempt++ {
		var st unix.Stat_t
		if err := unix.Fstatat(sdir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				c.stats.Vanished++
				return nil
			}
			return fmt.Errorf("lstat %s: %w", rel, err)
		}
		if c.opts.beforeOpen != nil {
			c.opts.beforeOpen(rel)
		}
		err := c.copyInode(ddir, sdir, rel, name, &st)
		switch {
		case err == nil:
			return nil
		case err == unix.ENOENT && !c.exists(sdir, name):
			// Gone from the source between lstat and open.
			c.stats.Vanished++
			return removeEntry(ddir, name)
		case err == errChanged && attempt < maxRetries:
			// Only this entry's own change is retried; a wrapped errChanged
			// from deeper down already used its retries.
			// Undo a partial make of this entry before looking again.
			if err := removeEntry(ddir, name); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			continue
		}
		var ee *entryError
		if errors.As(err, &ee) {
			return err // from deeper down, already naming its entry
		}
		return &entryError{rel: rel, err: err}
	}
}

// entryError names the source entry, relative to the root, a copy failed at.
type entryError struct {
	rel string
	err error
}

func (e *entryError) Error() string { return e.rel + ": " + e.err.Error() }
func (e *entryError) Unwrap() error { return e.err }

func (c *treeCopier) exists(dir int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// removeEntry removes what a failed attempt made at name in the destination.
func removeEntry(dir int, name string) error {
	err := unix.Unlinkat(dir, name, 0)
	if err == unix.EISDIR {
		err = os.RemoveAll(entryPath(dir, name))
	}
	if err != nil && err != unix.ENOENT {
		return fmt.Errorf("undo partial copy: %w", err)
	}
	return nil
}

func (c *treeCopier) copyInode(ddir, sdir int, rel, name string, st *unix.Stat_t) error {
	typ := st.Mode & unix.S_IFMT
	key := devIno{st.Dev, st.Ino}
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		if first, ok := c.links[key]; ok {
			if err := unix.Linkat(c.dstRoot, first, ddir, name, 0); err != nil {
				return fmt.Errorf("hard link to %s: %w", first, err)
			}
			c.stats.HardLinks++
			return nil
		}
	}
	var err error
	switch typ {
	case unix.S_IFDIR:
		err = c.copySubdir(ddir, sdir, rel, name, st)
	case unix.S_IFREG:
		err = c.copyRegular(ddir, sdir, name, st)
	case unix.S_IFLNK:
		err = c.copySymlink(ddir, sdir, name, st)
	default:
		err = c.copySpecial(ddir, sdir, rel, name, st)
	}
	if err == nil && typ != unix.S_IFDIR && st.Nlink > 1 {
		c.links[key] = rel
	}
	return err
}

func (c *treeCopier) copySubdir(ddir, sdir int, rel, name string, st *unix.Stat_t) error {
	if (devIno{st.Dev, st.Ino}) == c.dstIno {
		return errors.New("the destination is inside the source")
	}
	sfd, sst, err := openDir(sdir, name, st)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	// 0700 until the contents are in: a read-only source directory must not
	// keep the copy from filling it.
	if err := unix.Mkdirat(ddir, name, 0o700); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	dfd, _, err := openDir(ddir, name, nil)
	if err != nil {
		return fmt.Errorf("open copy: %w", err)
	}
	defer unix.Close(dfd)
	if err := c.copyDir(dfd, sfd, rel); err != nil {
		return err
	}
	if err := setEntryMeta(fdNode(dfd), fdNode(sfd), ddir, name, sst, false); err != nil {
		return err
	}
	c.stats.Dirs++
	return nil
}

func (c *treeCopier) copyRegular(ddir, sdir int, name string, st *unix.Stat_t) error {
	sfd, sst, err := openRegular(sdir, name, st)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	dfd, err := unix.Openat(ddir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create copy: %w", err)
	}
	defer unix.Close(dfd)
	reflinked, written, err := copyContents(c.ctx, dfd, sfd, sst.Size, c.prog)
	if err != nil {
		return err
	}
	if err := setEntryMeta(fdNode(dfd), fdNode(sfd), ddir, name, sst, false); err != nil {
		return err
	}
	c.stats.Files++
	c.stats.Bytes += sst.Size
	c.stats.DataBytes += written
	if reflinked {
		c.stats.Reflinked++
	}
	return nil
}

func (c *treeCopier) copySymlink(ddir, sdir int, name string, st *unix.Stat_t) error {
	target, err := readlinkat(sdir, name, st.Size)
	if err == unix.EINVAL {
		return errChanged // no longer a symlink
	}
	if err != nil {
		return fmt.Errorf("readlink: %w", err)
	}
	if err := unix.Symlinkat(target, ddir, name); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if err := setEntryMeta(entryNode(ddir, name), entryNode(sdir, name), ddir, name, st, true); err != nil {
		return err
	}
	c.stats.Symlinks++
	return nil
}

func readlinkat(dir int, name string, size int64) (string, error) {
	n := max(int(size)+1, 256)
	for {
		buf := make([]byte, n)
		got, err := unix.Readlinkat(dir, name, buf)
		if err != nil {
			return "", err
		}
		if got < len(buf) {
			return string(buf[:got]), nil
		}
		n *= 2 // the link grew since lstat
	}
}

func (c *treeCopier) copySpecial(ddir, sdir int, rel, name string, st *unix.Stat_t) error {
	typ := st.Mode & unix.S_IFMT
	err := unix.Mknodat(ddir, name, typ|0o600, int(st.Rdev))
	if err == unix.EPERM && (typ == unix.S_IFCHR || typ == unix.S_IFBLK) {
		// No CAP_MKNOD: a device node is not data; the caller reports it.
		c.stats.SkippedDevices++
		if len(c.stats.SkippedPaths) < maxSkippedPaths {
			c.stats.SkippedPaths = append(c.stats.SkippedPaths, rel)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	// Check that the source entry is still the node that was listed before
	// its attributes are read by name.
	var now unix.Stat_t
	if err := unix.Fstatat(sdir, name, &now, unix.AT_SYMLINK_NOFOLLOW); err != nil || !sameInode(st, &now) {
		return errChanged
	}
	if err := setEntryMeta(entryNode(ddir, name), entryNode(sdir, name), ddir, name, st, false); err != nil {
		return err
	}
	c.stats.Specials++
	return nil
}

// setEntryMeta gives the copy dst, entry name of ddir, the metadata of its
// source src: owner, xattrs, mode, then times.
func setEntryMeta(dst, src node, ddir int, name string, st *unix.Stat_t, isLink bool) error {
	if err := setMeta(dst, src, st, isLink); err != nil {
		return err
	}
	return setTimes(ddir, name, st)
}

// emptyDir removes everything inside dir after a failed CopyTree. dir was
// empty when the copy started, so all of it was made by the copy.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean up %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		// os.RemoveAll works with *at calls and does not follow symlinks.
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("clean up %s: %w", dir, errors.Join(errs...))
	}
	return nil
}

func displayPath(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}
