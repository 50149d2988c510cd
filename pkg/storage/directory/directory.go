// Package directory keeps each volume as a directory of the store's own
// filesystem: what the first release made, and still the default. All such
// volumes share one filesystem, so they are one trust domain: a client that
// forges NFS file handles can reach every inode of that filesystem. Sizes are
// recorded, never enforced. See docs/volume-kinds.md.
package directory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Backend keeps directory volumes directly under its root, the -export-dir.
// Every path it hands out is checked to lie inside the root after symlinks
// are resolved, so a client-planted symlink never redirects it.
type Backend struct {
	root string // absolute, symlinks resolved
	// copyTree copies a live directory volume for a clone.
	copyTree func(ctx context.Context, dst, src string, progress storage.Progress) error
}

var _ storage.Backend = (*Backend)(nil)

// New opens the store at dir, which must exist.
func New(dir string) (*Backend, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("export dir %s: %w", dir, err)
	}
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("export dir %s: %w", dir, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("export dir %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("export dir %s: not a directory", dir)
	}
	return &Backend{root: root, copyTree: copyTree}, nil
}

// Root is the store's absolute path.
func (b *Backend) Root() string { return b.root }

// Kinds implements storage.Backend.
func (b *Backend) Kinds() []storage.Kind { return []storage.Kind{storage.Directory} }

// Available implements storage.Backend: directories can always be made.
func (b *Backend) Available() error { return nil }

// path is the absolute path of volume name.
func (b *Backend) path(name string) (string, error) {
	if err := storage.CheckName(name); err != nil {
		return "", err
	}
	return filepath.Join(b.root, name), nil
}

// Create implements storage.Backend. An existing directory is reused as it
// is (a repeated Provision).
func (b *Backend) Create(ctx context.Context, spec storage.Spec) (v storage.Volume, created bool, err error) {
	path, err := b.path(spec.Name)
	if err != nil {
		return storage.Volume{}, false, err
	}
	v = storage.Volume{Name: spec.Name, Kind: storage.Directory, Path: path}
	if err := os.Mkdir(path, 0o700); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return storage.Volume{}, false, fmt.Errorf("create directory %s: %w", path, err)
		}
		if err := b.checkInside(path); err != nil {
			return storage.Volume{}, false, err
		}
		return v, false, nil
	}
	// From here on a failure removes the directory again: no half-made volume.
	defer func() {
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := b.checkInside(path); err != nil {
		return storage.Volume{}, false, err
	}
	if err := setOwner(path, spec); err != nil {
		return storage.Volume{}, false, err
	}
	return v, true, nil
}

// setOwner gives a new volume's root its owner and mode. Both are set before
// the volume is exported: ganesha caches attributes, and a change behind its
// back is seen late. Chmod comes after Mkdir because Mkdir's mode is cut by
// the umask.
func setOwner(path string, spec storage.Spec) error {
	if err := os.Lchown(path, spec.UID, spec.GID); err != nil {
		return fmt.Errorf("chown %s to %d:%d: %w", path, spec.UID, spec.GID, err)
	}
	if err := os.Chmod(path, spec.Mode); err != nil {
		return fmt.Errorf("chmod %s to %o: %w", path, spec.Mode, err)
	}
	return nil
}

// checkInside fails unless path, symlinks resolved, is a directory directly
// inside the store.
func (b *Backend) checkInside(path string) error {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", path, err)
	}
	if filepath.Dir(resolved) != b.root {
		return fmt.Errorf("%s resolves to %s, outside the export dir %s", path, resolved, b.root)
	}
	fi, err := os.Lstat(resolved)
	if err != nil {
		return fmt.Errorf("stat %s: %w", resolved, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", resolved)
	}
	return nil
}

// exists reports whether volume name is there and inside the store.
func (b *Backend) exists(name string) (string, bool, error) {
	path, err := b.path(name)
	if err != nil {
		return "", false, err
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return path, false, nil
	}
	if err := b.checkInside(path); err != nil {
		return path, false, err
	}
	return path, true, nil
}

// Open implements storage.Backend.
func (b *Backend) Open(ctx context.Context, name string) (storage.Volume, error) {
	path, ok, err := b.exists(name)
	if err != nil {
		return storage.Volume{}, err
	}
	if !ok {
		return storage.Volume{}, fmt.Errorf("directory %s: %w", path, storage.ErrNotFound)
	}
	return storage.Volume{Name: name, Kind: storage.Directory, Path: path}, nil
}

// Close implements storage.Backend: a directory needs no closing.
func (b *Backend) Close(ctx context.Context, name string) error {
	_, err := b.path(name)
	return err
}

// Remove implements storage.Backend. Symlinks inside are removed, never
// followed.
func (b *Backend) Remove(ctx context.Context, name string) error {
	path, ok, err := b.exists(name)
	if err != nil || !ok {
		return err
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// Archive implements storage.Backend: the directory is renamed to
// archived-<name>, or archived-<name>-<time> when that is taken.
func (b *Backend) Archive(ctx context.Context, name string, now time.Time) (string, error) {
	path, ok, err := b.exists(name)
	if err != nil || !ok {
		return "", err
	}
	target := storage.ArchiveName(name, "")
	if _, err := os.Lstat(filepath.Join(b.root, target)); err == nil {
		target = storage.ArchiveName(name, "-"+now.UTC().Format("20060102T150405.000000000"))
	}
	// RENAME_NOREPLACE: never overwrite an archive that appeared meanwhile.
	if err := unix.Renameat2(unix.AT_FDCWD, path, unix.AT_FDCWD, filepath.Join(b.root, target), unix.RENAME_NOREPLACE); err != nil {
		return "", fmt.Errorf("archive %s as %s: %w", path, target, err)
	}
	return target, nil
}

// IsEmpty reports whether volume name holds nothing.
func (b *Backend) IsEmpty(name string) (bool, error) {
	path, err := b.path(name)
	if err != nil {
		return false, err
	}
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return false, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return true, nil
}

// List implements storage.Backend: every visible directory that is not an
// archive.
func (b *Backend) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(b.root)
	if err != nil {
		return nil, fmt.Errorf("list export dir %s: %w", b.root, err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") || strings.HasPrefix(name, storage.ArchivePrefix) {
			continue
		}
		names = append(names, name)
	}
	return names, nil
}

// Usage implements storage.Backend. Directory volumes promise nothing.
func (b *Backend) Usage(ctx context.Context) (storage.Usage, error) {
	return StatFS(b.root)
}

// StatFS is the size and free space of the filesystem holding path.
func StatFS(path string) (storage.Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return storage.Usage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	return storage.Usage{Total: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize}, nil
}

// Expand implements storage.Backend. A directory volume's size is only
// recorded on its PV; nothing here enforces it, so there is nothing to grow.
func (b *Backend) Expand(ctx context.Context, name string, size int64, mode storage.ExpandMode) (int64, error) {
	if _, ok, err := b.exists(name); err != nil {
		return 0, err
	} else if !ok {
		return 0, fmt.Errorf("directory %s: %w", name, storage.ErrNotFound)
	}
	return size, nil
}

// Clone implements storage.Backend: src's tree (owners, modes, times,
// xattrs, hard links, holes) is copied into a hidden directory, which gets
// dst's owner and mode and is then renamed into place, so a volume under
// dst's name is always a whole copy, even after a crash mid-copy. The source
// stays live, so the copy is not crash-consistent: files being written
// during the copy may be caught half-written.
func (b *Backend) Clone(ctx context.Context, src string, dst storage.Spec, progress storage.Progress) (storage.Volume, bool, error) {
	srcPath, ok, err := b.exists(src)
	if err != nil {
		return storage.Volume{}, false, err
	}
	if !ok {
		return storage.Volume{}, false, fmt.Errorf("clone source %s: %w", src, storage.ErrNotFound)
	}
	dstPath, done, err := b.exists(dst.Name)
	if err != nil {
		return storage.Volume{}, false, err
	}
	v := storage.Volume{Name: dst.Name, Kind: storage.Directory, Path: dstPath}
	if done {
		return v, false, nil // a repeated call: the first one finished the copy
	}
	// The hidden copy is never exported, so one left by a crash is ours to
	// drop.
	sum := sha256.Sum256([]byte(dst.Name))
	tmp := filepath.Join(b.root, ".clone-"+hex.EncodeToString(sum[:12]))
	if err := os.RemoveAll(tmp); err != nil {
		return storage.Volume{}, false, fmt.Errorf("remove an unfinished clone %s: %w", tmp, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return storage.Volume{}, false, fmt.Errorf("clone %s: %w", dst.Name, err)
	}
	err = b.copyTree(ctx, tmp, srcPath, progress)
	if err == nil {
		err = setOwner(tmp, dst)
	}
	if err == nil {
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dstPath, unix.RENAME_NOREPLACE)
	}
	if err != nil {
		if rmErr := os.RemoveAll(tmp); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove the failed copy: %w", rmErr))
		}
		return storage.Volume{}, false, fmt.Errorf("clone %s into %s: %w", src, dst.Name, err)
	}
	return v, true, nil
}

// OwnFilesystem reports whether dir is the root of a filesystem of its own,
// rather than a directory of a larger one (such as the node's root disk).
func OwnFilesystem(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := unix.Stat(filepath.Join(dir, ".."), &parent); err != nil {
		return false, fmt.Errorf("stat %s/..: %w", dir, err)
	}
	return st.Dev != parent.Dev || st.Ino == parent.Ino, nil
}
