package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A -keep run forks a detached supervisor that runs the demo and then holds
// its processes until SIGTERM. The foreground half relays the supervisor's
// output and returns once the demo has finished, leaving it running.

const keptReady = "kept running; waiting for SIGTERM"

func pidFile(workDir string) string { return filepath.Join(workDir, "demo.pid") }
func logFile(workDir string) string { return filepath.Join(workDir, "demo.log") }

func startKept(cfg config) error {
	if pid, ok := keptPID(cfg.workDir); ok {
		return fmt.Errorf("a kept demo is already running (pid %d); stop it with `make demo-stop`", pid)
	}
	if err := os.MkdirAll(cfg.workDir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	out, err := os.Create(logFile(cfg.workDir))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(self, "-supervise", "-keep", "-repo", cfg.repo, "-provisioner-bin", cfg.provisioner, "-work-dir", cfg.workDir)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own session: the terminal's Ctrl-C and the end of `make` do not
	// reach it. It is stopped only by `demo -stop`, by PID.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(pidFile(cfg.workDir), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Relay the supervisor's story until it says it is holding.
	in, err := os.Open(logFile(cfg.workDir))
	if err != nil {
		return err
	}
	defer in.Close()
	r := bufio.NewReader(in)
	for {
		line, err := r.ReadString('\n')
		if line != "" && strings.HasSuffix(line, "\n") {
			fmt.Print(line)
			if strings.Contains(line, keptReady) {
				kubeconfig := findKubeconfig(cfg.workDir)
				fmt.Printf("\nThe cluster and the provisioner keep running (supervisor pid %d).\n", pid)
				fmt.Printf("  export KUBECONFIG=%s\n  kubectl get pvc,pv\n", kubeconfig)
				fmt.Printf("Stop them with: make demo-stop   (or: kill -TERM %d)\n", pid)
				return nil
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		select {
		case werr := <-exited:
			rest, _ := io.ReadAll(r)
			fmt.Print(line + string(rest))
			os.Remove(pidFile(cfg.workDir))
			return fmt.Errorf("the demo supervisor exited: %v", werr)
		case <-time.After(50 * time.Millisecond):
		}
		// An unfinished line stays in the reader's view: re-read it next time.
		if line != "" {
			r = bufio.NewReader(io.MultiReader(strings.NewReader(line), in))
		}
	}
}

// findKubeconfig finds the admin kubeconfig of the kept cluster.
func findKubeconfig(workDir string) string {
	matches, _ := filepath.Glob(filepath.Join(workDir, "nfs-provisioner-cp-*", "admin.kubeconfig"))
	if len(matches) == 0 {
		return "(not found)"
	}
	return matches[len(matches)-1]
}

// keptPID returns the PID of a running kept supervisor: the PID file's
// process, if it still runs this program with -supervise.
func keptPID(workDir string) (int, bool) {
	data, err := os.ReadFile(pidFile(workDir))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "-supervise") {
		return 0, false
	}
	return pid, true
}

// stopKept sends SIGTERM to a kept supervisor, which stops the provisioner
// and the control plane, and waits for it to go.
func stopKept(workDir string) error {
	pid, ok := keptPID(workDir)
	if !ok {
		fmt.Println("demo: no kept demo is running")
		os.Remove(pidFile(workDir))
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, alive := keptPID(workDir); !alive {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the kept demo (pid %d) did not stop within 60 s; see %s", pid, logFile(workDir))
		}
		time.Sleep(100 * time.Millisecond)
	}
	os.Remove(pidFile(workDir))
	fmt.Printf("demo: stopped the kept demo (pid %d) and everything it started\n", pid)
	return nil
}
