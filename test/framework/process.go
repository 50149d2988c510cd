package framework

import (
	"bytes"
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
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// DefaultStopGrace is how long Stop waits after SIGTERM before SIGKILL.
const DefaultStopGrace = 10 * time.Second

// ProcessSpec describes a child process for Launch.
type ProcessSpec struct {
	Name    string   // for messages; also the log file's base name in StartProcess
	Path    string   // the binary
	Args    []string // arguments, without the program name
	Env     []string // KEY=value pairs added to the test's own environment
	Dir     string   // working directory; empty means the test's
	LogFile string   // stdout and stderr go here (created or truncated)
}

// Process is a supervised child: it has its own process group, it gets
// SIGKILL from the kernel if the test binary dies without stopping it, and it
// is always reaped.
type Process struct {
	Name    string
	LogFile string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // from Wait; read it only after exited is closed
}

// Launch starts spec as a supervised child. The caller must Stop it.
func Launch(spec ProcessSpec) (*Process, error) {
	if spec.LogFile == "" {
		return nil, fmt.Errorf("launch %s: no log file", spec.Name)
	}
	logFile, err := os.Create(spec.LogFile)
	if err != nil {
		return nil, fmt.Errorf("launch %s: %w", spec.Name, err)
	}
	// The child holds its own descriptor; ours only has to live until Start.
	defer logFile.Close()

	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	if len(spec.Env) > 0 {
		cmd.Env = append(os.Environ(), spec.Env...)
	}
	cmd.Stdin = nil
	cmd.Stdout = logFile // an *os.File: no copying goroutine, the child writes directly
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group keeps a Ctrl-C or job-control signal aimed at
		// `go test` from reaching the child behind our back; Stop decides the
		// order instead (e.g. apiserver before etcd).
		Setpgid: true,
		// If the test binary panics or is killed, nobody runs Stop; the
		// kernel then kills the child.
		Pdeathsig: syscall.SIGKILL,
	}

	p := &Process{Name: spec.Name, LogFile: spec.LogFile, cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the *thread* that forked the child exits, not
		// the process (go.dev/issue/27505). The Go runtime ends a thread when
		// a goroutine locked to it returns, so fork from a goroutine that
		// holds its thread for as long as the child lives and unlocks only
		// after reaping it; then that thread exits only with the process.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		runtime.UnlockOSThread()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("launch %s: %w", spec.Name, err)
	}
	klog.V(1).InfoS("Started process", "name", spec.Name, "pid", p.PID(), "log", spec.LogFile)
	return p, nil
}

// StartProcess starts bin with args for the duration of the test t: its log
// is a file in t.TempDir(), and on cleanup it is stopped (SIGTERM, then
// SIGKILL after DefaultStopGrace) and, if t failed, the log's tail is logged.
func StartProcess(t testing.TB, name, bin string, args ...string) *Process {
	t.Helper()
	return StartProcessSpec(t, ProcessSpec{Name: name, Path: bin, Args: args})
}

// StartProcessSpec is StartProcess with a full ProcessSpec; an empty LogFile
// means a file in t.TempDir().
func StartProcessSpec(t testing.TB, spec ProcessSpec) *Process {
	t.Helper()
	if spec.LogFile == "" {
		// Registered before the stop cleanup below, so it runs after it:
		// the log stays readable while the process is stopped.
		spec.LogFile = filepath.Join(t.TempDir(), sanitizeFileName(spec.Name)+".log")
	}
	p, err := Launch(spec)
	if err != nil {
		t.Fatalf("framework: %v", err)
	}
	t.Cleanup(func() {
		select {
		case <-p.Exited():
			t.Logf("framework: %s (pid %d) had exited before cleanup: %v", p.Name, p.PID(), p.ExitErr())
		default:
		}
		if err := p.Stop(DefaultStopGrace); err != nil {
			t.Errorf("framework: %v", err)
		}
		if t.Failed() {
			t.Logf("framework: last lines of %s:\n%s", p.LogFile, p.Tail(40))
		}
	})
	return p
}

// PID is the child's process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the child has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr is the child's exit status as exec.Cmd.Wait reports it (nil for
// exit code 0). Call it only after Exited is closed.
func (p *Process) ExitErr() error { return p.err }

// Stop sends SIGTERM, waits up to grace, then sends SIGKILL, and returns once
// the child is reaped. It signals only this child, by its PID (through a
// pidfd, so a recycled PID cannot be hit). Stopping an exited process is a
// no-op; Stop may be called more than once.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s (pid %d): SIGTERM: %w", p.Name, p.PID(), err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.exited:
		return nil
	case <-timer.C:
	}
	klog.InfoS("Process ignored SIGTERM; sending SIGKILL", "name", p.Name, "pid", p.PID(), "grace", grace)
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s (pid %d): SIGKILL: %w", p.Name, p.PID(), err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("stop %s (pid %d): still not reaped 10s after SIGKILL", p.Name, p.PID())
	}
}

// RSS is the child's resident set size in bytes, from /proc/PID/status.
func (p *Process) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		return 0, fmt.Errorf("rss of %s: %w", p.Name, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss of %s: parse %q: %w", p.Name, line, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("rss of %s: no VmRSS in /proc/%d/status", p.Name, p.PID())
}

// Tail returns the last n lines of the child's log.
func (p *Process) Tail(n int) string {
	s, err := tailFile(p.LogFile, n)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogFile, err)
	}
	return s
}

// tailFile reads at most the last 64 KiB, which is plenty for n lines of
// klog output and bounded for a runaway log.
func tailFile(path string, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	const window = 64 << 10
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(fi.Size()-window, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, window))
	if err != nil {
		return "", err
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))), nil
}

func sanitizeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, s)
}
