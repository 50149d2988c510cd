package framework

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestCPUOfSelf(t *testing.T) {
	busy := time.Now()
	for time.Since(busy) < 50*time.Millisecond {
	}
	if cpu, err := CPUOf(os.Getpid()); err != nil || cpu < 10*time.Millisecond {
		t.Fatalf("CPU time of this test after 50 ms of work: %v, %v", cpu, err)
	}
	if _, err := CPUOf(-1); err == nil {
		t.Fatal("CPUOf(-1) succeeded")
	}
}

// A child's work counts in TreeCPUOf once it has been waited for (its
// parent's cutime and cstime), never in its parent's CPUOf.
func TestTreeCPUOfCountsChildren(t *testing.T) {
	// A shell that runs a busy child until the kernel stops it at one
	// second of CPU (RLIMIT_CPU), then waits: the child has been reaped, the
	// shell itself has done almost nothing.
	// The ":" keeps sleep a child: bash runs a -c string's last command in
	// its own place.
	cmd := exec.Command("sh", "-c", `sh -c 'ulimit -t 1; while :; do :; done'; sleep 30; :`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	Eventually(t, time.Minute, "the busy child reaped", func() (bool, error) {
		_, err := ChildNamed(cmd.Process.Pid, "sleep")
		return err == nil, nil
	})
	own, err := CPUOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := TreeCPUOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if tree < 900*time.Millisecond || own > 100*time.Millisecond {
		t.Fatalf("after a child busy for 1 s of CPU: the shell's own CPU %v (want little), with its reaped children %v (want about 1 s)", own, tree)
	}
}

func TestMachineCPUCountsBusyTime(t *testing.T) {
	before, cpus, err := MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	if cpus < 1 {
		t.Fatalf("MachineCPU counted %d CPUs", cpus)
	}
	self0, err := CPUOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	busy := time.Now()
	for time.Since(busy) < 200*time.Millisecond {
	}
	after, _, err := MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	self1, err := CPUOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Both are sampled at the clock tick: allow a few ticks either way.
	if got, want := after-before, self1-self0; got < want-50*time.Millisecond {
		t.Fatalf("the machine was busy %v while this process alone used %v", got, want)
	}
}
