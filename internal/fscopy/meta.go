package fscopy

import (
	"bytes"
	"fmt"

	"golang.org/x/sys/unix"
)

// node addresses one inode for the metadata calls: by an open descriptor where
// there is one (files, directories), else by directory descriptor and name
// (symlinks and special files, which are never opened).
type node struct {
	fd   int // -1 when addressed by dir and name
	dir  int
	name string
}

func fdNode(fd int) node                  { return node{fd: fd} }
func entryNode(dir int, name string) node { return node{fd: -1, dir: dir, name: name} }

func (n node) listxattr(buf []byte) (int, error) {
	if n.fd >= 0 {
		return unix.Flistxattr(n.fd, buf)
	}
	return unix.Llistxattr(entryPath(n.dir, n.name), buf)
}

func (n node) getxattr(attr string, buf []byte) (int, error) {
	if n.fd >= 0 {
		return unix.Fgetxattr(n.fd, attr, buf)
	}
	return unix.Lgetxattr(entryPath(n.dir, n.name), attr, buf)
}

func (n node) setxattr(attr string, val []byte) error {
	if n.fd >= 0 {
		return unix.Fsetxattr(n.fd, attr, val, 0)
	}
	return unix.Lsetxattr(entryPath(n.dir, n.name), attr, val, 0)
}

// copyXattrs copies every extended attribute the kernel shows us: user.*,
// security.* (capabilities, SELinux labels), trusted.* (only visible with
// CAP_SYS_ADMIN) and system.posix_acl_access/default (POSIX ACLs).
func copyXattrs(dst, src node) error {
	names, err := readXattr(func(b []byte) (int, error) { return src.listxattr(b) })
	if err != nil {
		return fmt.Errorf("list xattrs: %w", err)
	}
	for _, name := range bytes.Split(names, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		attr := string(name)
		if xfsACLAlias(attr) {
			continue
		}
		val, err := readXattr(func(b []byte) (int, error) { return src.getxattr(attr, b) })
		if err == unix.ENODATA {
			continue // removed since it was listed (a live source)
		}
		if err != nil {
			return fmt.Errorf("get xattr %s: %w", attr, err)
		}
		if err := dst.setxattr(attr, val); err != nil {
			return fmt.Errorf("set xattr %s: %w", attr, err)
		}
	}
	return nil
}

// xfsACLAlias tells the names under which XFS also lists an inode's POSIX
// ACLs (its on-disk form). The ACLs are copied as system.posix_acl_*; copied
// under these names too they would land on another filesystem as plain,
// meaningless trusted.* attributes.
func xfsACLAlias(name string) bool {
	return name == "trusted.SGI_ACL_FILE" || name == "trusted.SGI_ACL_DEFAULT"
}

// readXattr runs a size-then-read xattr call, again if the value grew in
// between (ERANGE).
func readXattr(call func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := call(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = call(buf)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// setMeta gives dst src's owner, extended attributes and mode, in that order:
// chown clears setuid/setgid and security.capability, and setting an ACL
// rewrites the group bits of the mode, so the mode comes last. Times are set
// separately (setTimes), after a directory's contents. Symlinks have no mode
// of their own on Linux; isLink skips it.
func setMeta(dst, src node, st *unix.Stat_t, isLink bool) error {
	var err error
	if dst.fd >= 0 {
		err = unix.Fchown(dst.fd, int(st.Uid), int(st.Gid))
	} else {
		err = unix.Fchownat(dst.dir, dst.name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return fmt.Errorf("chown %d:%d: %w", st.Uid, st.Gid, err)
	}
	if err := copyXattrs(dst, src); err != nil {
		return err
	}
	if isLink {
		return nil
	}
	mode := st.Mode & 0o7777
	if dst.fd >= 0 {
		err = unix.Fchmod(dst.fd, mode)
	} else {
		// A special file this copy just made: not a symlink, so following
		// is harmless.
		err = unix.Fchmodat(dst.dir, dst.name, mode, 0)
	}
	if err != nil {
		return fmt.Errorf("chmod %o: %w", mode, err)
	}
	return nil
}

// setTimes gives the entry name of dir src's access and modification times
// (the change time cannot be set), without following a symlink.
func setTimes(dir int, name string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(dir, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}
