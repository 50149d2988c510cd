package framework

import (
	"sync"
	"syscall"
	"testing"
)

// FreezeAPIServer stops kube-apiserver with SIGSTOP, as a hung or
// partitioned API server looks to its clients: connections stay open and
// nothing answers. It returns thaw, which sends SIGCONT; thaw is idempotent
// and also runs on cleanup, so a failing test never leaves the package's
// cluster frozen.
func (c *Cluster) FreezeAPIServer(t testing.TB) (thaw func()) {
	t.Helper()
	pid := c.apiserver.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("framework: SIGSTOP kube-apiserver (pid %d): %v", pid, err)
	}
	var once sync.Once
	thaw = func() {
		once.Do(func() {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("framework: SIGCONT kube-apiserver (pid %d): %v", pid, err)
			}
		})
	}
	t.Cleanup(thaw)
	return thaw
}
