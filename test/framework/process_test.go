package framework

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const helperEnv = "FRAMEWORK_TEST_HELPER"

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func launchForTest(t *testing.T, name string, args ...string) *Process {
	t.Helper()
	p, err := Launch(ProcessSpec{Name: name, Path: args[0], Args: args[1:], LogFile: filepath.Join(t.TempDir(), name+".log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	return p
}

func waitForLog(t *testing.T, p *Process, want string) {
	t.Helper()
	Eventually(t, 10*time.Second, p.Name+" to log "+want, func() (bool, error) {
		return strings.Contains(p.Tail(10), want), nil
	})
}

func TestProcessStopSendsSIGTERM(t *testing.T) {
	p := launchForTest(t, "sleep", "sleep", "300")
	if !alive(p.PID()) {
		t.Fatalf("pid %d not running after Launch", p.PID())
	}
	pgid, err := syscall.Getpgid(p.PID())
	if err != nil || pgid != p.PID() {
		t.Errorf("process group %d, %v; want its own (%d)", pgid, err, p.PID())
	}
	start := time.Now()
	if err := p.Stop(DefaultStopGrace); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v for a process that obeys SIGTERM", d)
	}
	if sig := exitSignal(p.ExitErr()); sig != syscall.SIGTERM {
		t.Errorf("exit: %v; want killed by SIGTERM", p.ExitErr())
	}
	if err := p.Stop(DefaultStopGrace); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestProcessStopEscalatesToSIGKILL(t *testing.T) {
	// An ignored signal stays ignored across exec.
	p := launchForTest(t, "stubborn", "sh", "-c", `trap "" TERM; echo ready; exec sleep 300`)
	waitForLog(t, p, "ready")
	const grace = 300 * time.Millisecond
	start := time.Now()
	if err := p.Stop(grace); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < grace {
		t.Errorf("Stop returned after %v, before the %v grace period", d, grace)
	}
	if sig := exitSignal(p.ExitErr()); sig != syscall.SIGKILL {
		t.Errorf("exit: %v; want killed by SIGKILL", p.ExitErr())
	}
}

func TestProcessLogTailAndRSS(t *testing.T) {
	p := launchForTest(t, "printer", "sh", "-c", `for i in $(seq 1 100); do echo line $i; done; echo err >&2; exec sleep 300`)
	waitForLog(t, p, "err")
	if got, want := p.Tail(3), "line 99\nline 100\nerr"; got != want {
		t.Errorf("Tail(3) = %q, want %q", got, want)
	}
	rss, err := p.RSS()
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 || rss > 1<<30 {
		t.Errorf("RSS of sleep = %d bytes", rss)
	}
}

func TestStartProcessStopsOnCleanup(t *testing.T) {
	var pid int
	t.Run("inner", func(t *testing.T) {
		p := StartProcess(t, "sleep", "sleep", "300")
		pid = p.PID()
		if !alive(pid) {
			t.Fatal("not running")
		}
	})
	if alive(pid) {
		t.Errorf("pid %d still running after the test's cleanup", pid)
	}
}

// TestProcessSurvivesLauncherThreadAndDiesWithTestBinary re-runs this test
// binary as a helper that launches `sleep` from a goroutine whose OS thread
// then exits, checks the child is still alive, and panics. Pdeathsig must
// not fire on the first (the child belongs to the launcher's own locked
// thread) and must fire on the second.
func TestProcessSurvivesLauncherThreadAndDiesWithTestBinary(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=launch-and-panic", "FRAMEWORK_TEST_HELPER_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("helper did not fail as it should: %v\n%s", err, out)
	}
	var pid int
	var sawAlive bool
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
		if rest, ok := strings.CutPrefix(sc.Text(), "child "); ok {
			pid, _ = strconv.Atoi(rest)
		}
		sawAlive = sawAlive || sc.Text() == "alive after launcher thread exit"
	}
	if pid == 0 {
		t.Fatalf("helper printed no child pid:\n%s", out)
	}
	t.Cleanup(func() {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL) // our own grandchild, by PID
		}
	})
	if !sawAlive {
		t.Errorf("child died when the launching goroutine's thread exited:\n%s", out)
	}
	Eventually(t, 5*time.Second, fmt.Sprintf("child %d killed after the helper panicked", pid), func() (bool, error) {
		return !alive(pid), nil
	})
}

func runHelper(mode string) {
	if mode != "launch-and-panic" {
		fmt.Println("unknown helper mode", mode)
		os.Exit(3)
	}
	// Pin main to its thread (the process's main thread, which the runtime
	// never terminates) so that the launcher below runs on another one.
	runtime.LockOSThread()
	launched := make(chan *Process)
	go func() {
		// Exiting while locked makes the runtime terminate this thread.
		runtime.LockOSThread()
		if syscall.Gettid() == os.Getpid() {
			fmt.Println("launcher landed on the main thread, which never exits; the test would prove nothing")
			os.Exit(3)
		}
		p, err := Launch(ProcessSpec{Name: "sleep", Path: "sleep", Args: []string{"300"},
			LogFile: filepath.Join(os.Getenv("FRAMEWORK_TEST_HELPER_DIR"), "sleep.log")})
		if err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
		launched <- p
	}()
	p := <-launched
	fmt.Printf("child %d\n", p.PID())
	time.Sleep(300 * time.Millisecond) // long enough for a thread exit to deliver Pdeathsig
	if alive(p.PID()) {
		fmt.Println("alive after launcher thread exit")
	}
	panic("helper panics with a child running")
}

func exitSignal(err error) syscall.Signal {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}
