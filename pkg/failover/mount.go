package failover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// MountSpec describes the ceph-fuse mount of the store's state directory.
type MountSpec struct {
	Binary     string // default "ceph-fuse"
	Ceph       Ceph   // cluster, user, keyring and file system
	Root       string // CephFS path mounted
	Mountpoint string // local directory
	Holder     string // this holder's identity, put into the client metadata
	LogFile    string // ceph-fuse's output
	// OnLost is called (once, from another goroutine) when ceph-fuse exits
	// while mounted: the state is gone, and so is the right to serve.
	OnLost func(error)
}

// Mount is a running ceph-fuse.
type Mount struct {
	spec   MountSpec
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	closed chan struct{}
}

// StartMount mounts spec.Root at spec.Mountpoint with ceph-fuse, a child
// that dies with this process (a SIGKILLed provisioner leaves no mount
// writer behind), and returns once the mount is there.
func StartMount(ctx context.Context, spec MountSpec) (*Mount, error) {
	logger := klog.FromContext(ctx)
	bin := spec.Binary
	if bin == "" {
		bin = "ceph-fuse"
	}
	if err := os.MkdirAll(spec.Mountpoint, 0o700); err != nil && !errors.Is(err, syscall.ENOTCONN) {
		return nil, fmt.Errorf("state mountpoint: %w", err)
	}
	// A ceph-fuse of an earlier run of this replica that died leaves a
	// dead mount ("transport endpoint is not connected") behind.
	if isFuseMount(spec.Mountpoint) {
		logger.Info("Detaching a leftover state mount", "mountpoint", spec.Mountpoint)
		if err := unix.Unmount(spec.Mountpoint, unix.MNT_DETACH); err != nil {
			return nil, fmt.Errorf("detach leftover mount %s: %w", spec.Mountpoint, err)
		}
	}
	args := append(spec.Ceph.args(), "-f", "-r", spec.Root,
		"--client_metadata="+HolderKey+"="+spec.Holder,
		// Two processes on one machine must not share an admin socket.
		"--admin_socket=",
	)
	if spec.Ceph.FS != "" {
		args = append(args, "--client_fs="+spec.Ceph.FS)
	}
	args = append(args, spec.Mountpoint)
	cmd := exec.Command(bin, args...)
	if spec.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(spec.LogFile), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	m := &Mount{spec: spec, cmd: cmd, done: make(chan struct{}), closed: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child ends: this
		// goroutine keeps its thread until the child is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(m.done)
			return
		}
		started <- nil
		m.err = cmd.Wait()
		close(m.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start ceph-fuse: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !isFuseMount(spec.Mountpoint) {
		select {
		case <-m.done:
			return nil, fmt.Errorf("ceph-fuse exited before mounting %s (%v): %s", spec.Root, m.err, tail(spec.LogFile, 10))
		case <-ctx.Done():
			m.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Close()
			return nil, fmt.Errorf("ceph-fuse did not mount %s within 30s: %s", spec.Root, tail(spec.LogFile, 10))
		}
	}
	go func() {
		select {
		case <-m.done:
			if spec.OnLost != nil {
				spec.OnLost(fmt.Errorf("ceph-fuse (pid %d) exited: %v", cmd.Process.Pid, m.err))
			}
		case <-m.closed:
		}
	}()
	logger.Info("State directory mounted from CephFS", "root", spec.Root, "mountpoint", spec.Mountpoint, "pid", cmd.Process.Pid)
	return m, nil
}

// PID is ceph-fuse's process ID.
func (m *Mount) PID() int { return m.cmd.Process.Pid }

// Close unmounts and stops ceph-fuse. After an eviction the unmount may
// fail; the mount is then detached.
func (m *Mount) Close() {
	select {
	case <-m.closed:
		return
	default:
		close(m.closed)
	}
	if err := unix.Unmount(m.spec.Mountpoint, 0); err != nil {
		_ = unix.Unmount(m.spec.Mountpoint, unix.MNT_DETACH)
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// isFuseMount reports whether dir is the mountpoint of a ceph-fuse mount.
func isFuseMount(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMount(fields[4]) != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") {
				return true
			}
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline
// and backslash.
func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
