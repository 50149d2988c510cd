package fsimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/internal/keyed"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Options configure a Backend. ImageDir and MountDir are required; both
// are made (mode 0700, root only) when missing.
type Options struct {
	// ImageDir holds one image file per volume, named as the volume, and
	// the archives (archived-<name>). It should not be exported.
	ImageDir string
	// MountDir holds one mount point per open volume, <MountDir>/<name>:
	// the path ganesha exports. It should not be exported itself.
	MountDir string
	// Kinds this backend makes; default storage.XFS and storage.Ext4.
	Kinds []storage.Kind
	// UnmountTimeout bounds how long Close retries an unmount that fails
	// with EBUSY (ganesha closing the files of an export just removed);
	// default 10 s.
	UnmountTimeout time.Duration
}

const (
	// tempPrefix names images and mount points that a call is still making.
	// Nothing else starts with a dot: New removes them (the caller holds the
	// store lock, so no other process is making them).
	tempPrefix = ".tmp-"
	// archivePrefix names archived images; List never shows them and no
	// volume may have such a name.
	archivePrefix = storage.ArchivePrefix
	// initXattr, on an image, holds the owner and mode its root directory
	// must get ("uid:gid:mode") when that has not happened yet. Set before
	// the image gets its name, cleared after the chown, so a crash in
	// between is finished by the next Open. trusted.*: only root sees it,
	// and NFS clients cannot reach it.
	initXattr = "trusted.nfs-provisioner.init"
)

// Backend keeps XFS and ext4 volumes as image files on loop devices.
type Backend struct {
	opts  Options
	locks keyed.Mutex // Clone takes its source's and destination's, so two clones of one source never freeze it twice
}

var _ storage.Backend = (*Backend)(nil)

// New makes the directories and finishes what a killed process left
// half-done: temporary images and mount points of interrupted creates and
// clones are unmounted, detached and removed (they never held a volume's
// data), and every mounted volume is thawed (a clone killed while its
// source was frozen). The caller holds the store's lock.
func New(ctx context.Context, opts Options) (*Backend, error) {
	if opts.ImageDir == "" || opts.MountDir == "" {
		return nil, errors.New("fsimage: ImageDir and MountDir are required")
	}
	if len(opts.Kinds) == 0 {
		opts.Kinds = []storage.Kind{storage.XFS, storage.Ext4}
	}
	for _, k := range opts.Kinds {
		if k != storage.XFS && k != storage.Ext4 {
			return nil, fmt.Errorf("fsimage: kind %q is not a filesystem kind", k)
		}
	}
	if opts.UnmountTimeout == 0 {
		opts.UnmountTimeout = 10 * time.Second
	}
	for _, d := range []string{opts.ImageDir, opts.MountDir} {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("fsimage: %s is not an absolute path", d)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("fsimage: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("fsimage: %w", err)
		}
	}
	b := &Backend{opts: opts}
	if err := b.sweep(ctx); err != nil {
		return nil, fmt.Errorf("fsimage: clean up after an interrupted run: %w", err)
	}
	return b, nil
}

// Kinds returns the kinds this backend makes.
func (b *Backend) Kinds() []storage.Kind { return slices.Clone(b.opts.Kinds) }

func (b *Backend) imagePath(name string) string  { return filepath.Join(b.opts.ImageDir, name) }
func (b *Backend) mountPoint(name string) string { return filepath.Join(b.opts.MountDir, name) }

// checkName rejects anything but one visible path component that is not an
// archive's name. Names come from PV annotations: checked before every use.
func checkName(name string) error {
	if err := storage.CheckName(name); err != nil {
		return err
	}
	if strings.HasPrefix(name, archivePrefix) {
		return fmt.Errorf("volume name %q starts with %q, kept for archives", name, archivePrefix)
	}
	return nil
}

// List names the images in the store, open or not; never archives or
// temporary images.
func (b *Backend) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(b.opts.ImageDir)
	if err != nil {
		return nil, fmt.Errorf("list images in %s: %w", b.opts.ImageDir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.Type().IsRegular() || checkName(e.Name()) != nil {
			continue
		}
		names = append(names, e.Name())
	}
	return names, nil
}

// Usage is the image directory's filesystem, and the apparent size of every
// image in it: archived and half-made ones can fill up too.
func (b *Backend) Usage(ctx context.Context) (storage.Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(b.opts.ImageDir, &st); err != nil {
		return storage.Usage{}, fmt.Errorf("statfs %s: %w", b.opts.ImageDir, err)
	}
	u := storage.Usage{Total: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize}
	entries, err := os.ReadDir(b.opts.ImageDir)
	if err != nil {
		return storage.Usage{}, fmt.Errorf("list images in %s: %w", b.opts.ImageDir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil {
			u.Allocated += fi.Size()
		}
	}
	return u, nil
}

// Remove closes the volume and deletes its image.
func (b *Backend) Remove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	unlock := b.locks.Lock(name)
	defer unlock()
	if err := b.close(ctx, name); err != nil {
		return err
	}
	if err := os.Remove(b.imagePath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove image: %w", err)
	}
	klog.FromContext(ctx).V(2).Info("Removed filesystem volume", "volume", name)
	return nil
}

// Archive closes the volume and renames its image to archived-<name>, or
// archived-<name>-<time> when that is taken; never over another file.
func (b *Backend) Archive(ctx context.Context, name string, now time.Time) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	unlock := b.locks.Lock(name)
	defer unlock()
	if _, err := os.Lstat(b.imagePath(name)); errors.Is(err, os.ErrNotExist) {
		return "", b.close(ctx, name)
	}
	if err := b.close(ctx, name); err != nil {
		return "", err
	}
	target := storage.ArchiveName(name, "")
	err := unix.Renameat2(unix.AT_FDCWD, b.imagePath(name), unix.AT_FDCWD, b.imagePath(target), unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		target = storage.ArchiveName(name, "-"+now.UTC().Format("20060102T150405.000000000"))
		err = unix.Renameat2(unix.AT_FDCWD, b.imagePath(name), unix.AT_FDCWD, b.imagePath(target), unix.RENAME_NOREPLACE)
	}
	if err != nil {
		return "", fmt.Errorf("archive image %s as %s: %w", name, target, err)
	}
	klog.FromContext(ctx).V(2).Info("Archived filesystem volume", "volume", name, "archive", target)
	return target, nil
}
