package ganesha

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// servicesFile is where getaddrinfo(3) looks up service names.
const servicesFile = "/etc/services"

// preflight checks, before anything starts, what the data path needs and
// no later step reports clearly:
//
//   - ganesha's VFS backend reaches every file through open_by_handle_at(2).
//     Without CAP_DAC_READ_SEARCH that call fails with EPERM, yet ganesha
//     starts, exports and answers; every client then gets NFS4ERR_PERM.
//     A file system without NFS file handles (an overlay root, for one) fails
//     the same way later.
//   - rpcbind resolves the service "sunrpc" through /etc/services (netbase);
//     without it it exits with "Servname not supported for ai_socktype".
//
// dir is a directory on the store (the state dir lives there). The error
// names the missing capability or package, so that the process exits before
// it is ever ready.
func preflight(dir string, nfsv3 bool) error {
	var errs []error
	if err := checkFileHandles(dir); err != nil {
		errs = append(errs, err)
	}
	if nfsv3 {
		if err := checkServices(servicesFile); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("preflight: %w", errors.Join(errs...))
	}
	return nil
}

// checkFileHandles does to dir what ganesha does to every exported file:
// name_to_handle_at, then open_by_handle_at through a descriptor on the same
// mount.
func checkFileHandles(dir string) error {
	mountFD, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(mountFD)
	handle, _, err := unix.NameToHandleAt(mountFD, "", unix.AT_EMPTY_PATH)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("name_to_handle_at(%s): %w: its file system (%s) has no NFS file handles; put the store on a host directory or a volume (a container's overlay root does not work)",
				dir, err, fsType(dir))
		}
		return fmt.Errorf("name_to_handle_at(%s): %w", dir, err)
	}
	fd, err := unix.OpenByHandleAt(mountFD, handle, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("open_by_handle_at(%s): %w: missing capability DAC_READ_SEARCH, which ganesha's VFS backend needs to serve any file (add it to the container's securityContext capabilities)",
				dir, err)
		}
		return fmt.Errorf("open_by_handle_at(%s): %w", dir, err)
	}
	unix.Close(fd)
	return nil
}

// checkServices looks for the sunrpc entry rpcbind resolves.
func checkServices(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("NFSv3 needs rpcbind, which needs %s: %w: install netbase (or serve NFSv4 only: -nfs-versions=4)", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "sunrpc" && strings.HasPrefix(fields[1], "111/") {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return fmt.Errorf("NFSv3 needs rpcbind, which needs the service sunrpc (111) in %s, and it is not there: install netbase (or serve NFSv4 only: -nfs-versions=4)", path)
}

// fsType names dir's file system for an error message; best effort.
func fsType(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlay"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	}
	return fmt.Sprintf("magic %#x", st.Type)
}
