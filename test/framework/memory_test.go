package framework

import (
	"os"
	"os/exec"
	"testing"
)

func TestMemoryOfSelf(t *testing.T) {
	m, err := MemoryOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.Anon <= 0 || m.File <= 0 || m.PeakRSS < m.RSS || m.Anon+m.File > m.RSS {
		t.Fatalf("implausible memory of this test: %+v", m)
	}
	if _, err := MemoryOf(-1); err == nil {
		t.Fatal("MemoryOf(-1) succeeded")
	}
}

func TestChildNamed(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid, err := ChildNamed(os.Getpid(), "sleep")
	if err != nil {
		t.Fatal(err)
	}
	if pid != cmd.Process.Pid {
		t.Fatalf("ChildNamed found pid %d, want %d", pid, cmd.Process.Pid)
	}
	if _, err := ChildNamed(os.Getpid(), "no-such-child"); err == nil {
		t.Fatal("found a child that does not exist")
	}
}
