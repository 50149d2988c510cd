package ganesha

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/internal/caplog"
)

// Each child's log is capped at logCap bytes a file, with logKeep older
// files kept: 30 MiB at most per child.
const (
	logCap  = 10 << 20
	logKeep = 2
)

// markerEnv is put into the environment of every child. Together with the
// command line it tells a leftover of ours (same state dir) from a process
// that merely reuses the PID, or a daemon of another state dir.
const markerEnv = "NFS_PROVISIONER_STATE_DIR"

// spawner starts children from one goroutine locked to its OS thread.
// Pdeathsig fires when the *thread* that forked the child exits, not the
// process; the Go runtime may retire idle threads, so forking from arbitrary
// goroutines could kill a healthy child. The locked thread lives until
// close, after which no child of ours should be running.
type spawner struct {
	reqs chan spawnReq
	done chan struct{}
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread exits with this goroutine, which
		// delivers Pdeathsig to anything still running.
		defer close(s.done)
		for r := range s.reqs {
			r.reply <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, reply: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.done:
		return errors.New("spawner closed")
	}
	return <-r.reply
}

func (s *spawner) close() {
	close(s.reqs)
	<-s.done
}

// child is a running process we started and will Wait for.
type child struct {
	name    string
	cmd     *exec.Cmd
	pidFile string
	done    chan struct{} // closed after Wait returned
	waitErr error
	started time.Time
}

type childSpec struct {
	name     string
	path     string
	args     []string
	env      []string // added to a minimal environment
	stateDir string
	pidFile  string // written by us unless ownPidFile
	logFile  string // stdout+stderr
	// detach leaves the child running when we die (test helpers simulating
	// a SIGKILLed provisioner whose children survived).
	detach bool
}

func startChild(sp *spawner, spec childSpec) (*child, error) {
	cmd := exec.Command(spec.path, spec.args...)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		markerEnv + "=" + spec.stateDir,
	}, spec.env...)
	cmd.Dir = spec.stateDir
	copied := make(chan struct{})
	switch {
	case spec.logFile != "" && !spec.detach:
		// Through a pipe into a capped file: a chatty child cannot fill the
		// disk. (A detached child must not depend on our end of a pipe.)
		out, err := caplog.Open(spec.logFile, logCap, logKeep)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.name, err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			out.Close()
			return nil, fmt.Errorf("start %s: %w", spec.name, err)
		}
		defer w.Close() // the child has its own copy after Start
		cmd.Stdout, cmd.Stderr = w, w
		go func() {
			defer close(copied)
			_, _ = io.Copy(out, r)
			r.Close()
			out.Close()
		}()
	case spec.logFile != "":
		f, err := os.OpenFile(spec.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.name, err)
		}
		defer f.Close() // the child has its own copy after Start
		cmd.Stdout, cmd.Stderr = f, f
		close(copied)
	default:
		close(copied)
	}
	if spec.detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// Own process group: a terminal's Ctrl-C goes to us, and we decide
		// how the children stop. Pdeathsig: they never outlive us.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := sp.start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	c := &child{name: spec.name, cmd: cmd, pidFile: spec.pidFile, done: make(chan struct{}), started: time.Now()}
	go func() {
		c.waitErr = cmd.Wait()
		// The log's last lines are what a failed start quotes; a grandchild
		// holding the pipe open must not delay the exit's news for long.
		select {
		case <-copied:
		case <-time.After(time.Second):
		}
		close(c.done)
	}()
	if spec.pidFile != "" {
		if err := writeFileAtomic(spec.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644, false); err != nil {
			c.kill()
			return nil, err
		}
	}
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *child) exitStatus() string {
	if !c.exited() {
		return "running"
	}
	if c.waitErr == nil {
		return "exit status 0"
	}
	return c.waitErr.Error()
}

func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// stop sends SIGTERM, waits up to grace, then SIGKILL, and always reaps.
func (c *child) stop(ctx context.Context, grace time.Duration) {
	defer c.removePidFile()
	if c.exited() {
		return
	}
	logger := klog.FromContext(ctx)
	c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	logger.Info("Child did not stop after SIGTERM, sending SIGKILL", "name", c.name, "pid", c.pid())
	c.kill()
}

func (c *child) removePidFile() {
	if c.pidFile == "" {
		return
	}
	// Only our own PID: a restarted instance may already have rewritten it.
	if pid, err := readPidFile(c.pidFile); err == nil && pid == c.pid() {
		os.Remove(c.pidFile)
	}
}

func readPidFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, data)
	}
	return pid, nil
}

// procRunning reports whether pid exists and is not a zombie. Orphans are
// reaped late by some PID 1s; a zombie holds no ports and is as good as gone.
func procRunning(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may contain spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false
	}
	return data[i+2] != 'Z'
}

// isOurLeftover reports whether pid runs binary (base name) and carries our
// state-dir marker.
func isOurLeftover(pid int, binary, stateDir string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(cmdline) == 0 {
		return false
	}
	argv0 := string(bytes.SplitN(cmdline, []byte{0}, 2)[0])
	if filepath.Base(argv0) != binary {
		return false
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	want := []byte(markerEnv + "=" + stateDir)
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true
		}
	}
	return false
}

// killLeftover kills the process named by pidFile if it is a leftover of
// ours (a previous run that was SIGKILLed before it could stop its
// children), waits until it is gone and removes the pid file. Anything else
// behind the PID is left alone.
func killLeftover(ctx context.Context, pidFile string, binaries []string, stateDir string) error {
	pid, err := readPidFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		os.Remove(pidFile)
		return nil
	}
	ours := false
	for _, b := range binaries {
		if isOurLeftover(pid, b, stateDir) {
			ours = true
			break
		}
	}
	if !ours || !procRunning(pid) {
		os.Remove(pidFile)
		return nil
	}
	klog.FromContext(ctx).Info("Killing leftover process of a previous run", "pid", pid, "binary", binaries[0], "pidFile", pidFile)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill leftover %s (pid %d): %w", binaries[0], pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for procRunning(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("leftover %s (pid %d) still running 10s after SIGKILL", binaries[0], pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	os.Remove(pidFile)
	return nil
}

// tailFile returns up to n last lines of path, for error messages.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lookBinary finds a program on PATH or in the sbin directories that a
// non-login PATH often lacks.
func lookBinary(configured, name string) (string, error) {
	if configured != "" {
		if _, err := exec.LookPath(configured); err != nil {
			return "", err
		}
		return configured, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}
