package fscopy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// CopyFile copies the regular file src to dst, which must not exist. It is
// meant for the image files of filesystem volumes.
//
// It reflinks (FICLONE) when src and dst are on one filesystem that shares
// extents (XFS with reflink, btrfs), and reports reflinked == true; otherwise
// it copies only src's data extents, so a sparse image stays sparse. dst gets
// src's permission bits (not its owner or times) and is fsynced, as is its
// directory entry.
//
// src is not followed if it is a symlink. dst is created with O_EXCL, so an
// existing file or symlink at dst is an error and left alone. On any failure,
// cancellation of ctx included, the partial dst is removed.
//
// progress, if not nil, is called with bytes done and src's size (holes count
// as done) at most once a second, and once at the end with done == total.
func CopyFile(ctx context.Context, dst, src string, progress func(done, total int64)) (reflinked bool, err error) {
	return copyFile(ctx, dst, src, progress, defaultProgressInterval)
}

func copyFile(ctx context.Context, dst, src string, fn func(done, total int64), interval time.Duration) (reflinked bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	sfd, st, err := openRegular(unix.AT_FDCWD, src, nil)
	if err == errChanged || err == unix.ELOOP {
		return false, fmt.Errorf("copy %s: not a regular file", src)
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", src, err)
	}
	defer unix.Close(sfd)

	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("create %s: %w", dst, err)
	}
	var created unix.Stat_t
	if err := unix.Fstat(int(out.Fd()), &created); err != nil {
		out.Close()
		return false, errors.Join(fmt.Errorf("fstat %s: %w", dst, err), removeCreated(dst, nil))
	}
	defer func() {
		if err != nil {
			out.Close()
			err = errors.Join(err, removeCreated(dst, &created))
		}
	}()

	p := newProgress(fn, st.Size, interval)
	dfd := int(out.Fd())
	reflinked, _, err = copyContents(ctx, dfd, sfd, st.Size, p)
	if err != nil {
		return false, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := unix.Fchmod(dfd, st.Mode&0o777); err != nil {
		return false, fmt.Errorf("chmod %s: %w", dst, err)
	}
	if err := out.Sync(); err != nil {
		return false, fmt.Errorf("fsync %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return false, fmt.Errorf("close %s: %w", dst, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return false, err
	}
	p.finish()
	return reflinked, nil
}

// removeCreated removes dst after a failed copy, but only if it is still the
// file this call created (want): whatever else is at that name now is not
// ours to delete.
func removeCreated(dst string, want *unix.Stat_t) error {
	if want != nil {
		var st unix.Stat_t
		if err := unix.Lstat(dst, &st); err != nil || !sameInode(want, &st) {
			return nil
		}
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove partial copy: %w", err)
	}
	return nil
}

// syncDir makes a new directory entry in dir durable.
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
