package fscopy

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// errChanged says that an entry of the source changed type or identity
// between its lstat and its open (a live source, or someone racing the copy).
// The entry is looked at again.
var errChanged = errors.New("entry changed while being copied")

// fdPath names an open descriptor as a path. The kernel resolves it to the
// very inode the descriptor holds, so reopening or addressing an entry through
// it cannot be redirected by a rename or a symlink swap.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// entryPath names the entry name of the directory open as dirfd, for the
// path-only system calls (l*xattr) that have no *at form in x/sys.
func entryPath(dirfd int, name string) string { return fdPath(dirfd) + "/" + name }

// openat opens name relative to dirfd, retrying without O_NOATIME where the
// kernel refuses it (O_NOATIME needs ownership or CAP_FOWNER). O_NOATIME keeps
// the copy from changing the source's access times.
func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EPERM && flags&unix.O_NOATIME != 0:
			flags &^= unix.O_NOATIME
			continue
		}
		return fd, err
	}
}

// openDir opens the directory name relative to dirfd without following a
// symlink. A name that is not (or no longer) a directory gives errChanged.
func openDir(dirfd int, name string, want *unix.Stat_t) (int, *unix.Stat_t, error) {
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NOATIME)
	if err == unix.ELOOP || err == unix.ENOTDIR {
		return -1, nil, errChanged
	}
	if err != nil {
		return -1, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("fstat: %w", err)
	}
	if want != nil && !sameInode(want, &st) {
		unix.Close(fd)
		return -1, nil, errChanged
	}
	return fd, &st, nil
}

// openRegular opens the regular file name relative to dirfd for reading.
//
// It first takes an O_PATH|O_NOFOLLOW descriptor, which opens nothing: a
// symlink is held as the link itself, and a FIFO or device node is not opened
// (opening a FIFO blocks; opening a device can have effects, and a client with
// mknod rights may plant one). Only when fstat shows a regular file (and, if
// want is given, the inode that was listed) is it reopened for reading through
// /proc/self/fd, which reaches that same inode whatever happened to the name.
func openRegular(dirfd int, name string, want *unix.Stat_t) (int, *unix.Stat_t, error) {
	pfd, err := openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return -1, nil, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return -1, nil, fmt.Errorf("fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || (want != nil && !sameInode(want, &st)) {
		return -1, &st, errChanged
	}
	fd, err := openat(unix.AT_FDCWD, fdPath(pfd), unix.O_RDONLY|unix.O_NOATIME)
	if err != nil {
		return -1, nil, err
	}
	return fd, &st, nil
}

func sameInode(a, b *unix.Stat_t) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Mode&unix.S_IFMT == b.Mode&unix.S_IFMT
}

// readNames lists the directory open as fd, without . and .., from its start.
func readNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, unix.SEEK_SET); err != nil {
		return nil, fmt.Errorf("rewind directory: %w", err)
	}
	var names []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("getdents: %w", err)
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
