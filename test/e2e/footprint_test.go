package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// TestIdleProvisionerGivesMemoryBack: once a burst of claims is over and the
// provisioner has been idle for a while, the pages of its executable that
// the burst ran are no longer in its RSS (internal/idletrim). Right after
// the burst they are about 15–20 MB; with nothing given back they stay
// until memory pressure comes, which no test here makes.
func TestIdleProvisionerGivesMemoryBack(t *testing.T) {
	env := newTestEnv(t)
	c, ns, p := env.c, env.ns, env.p
	const n = 20
	for i := range n {
		createClaim(t, c, framework.Claim(ns, fmt.Sprintf("idle-%d", i), env.class, "1Mi"))
	}
	for i := range n {
		waitBound(t, c, ns, fmt.Sprintf("idle-%d", i))
	}
	pid := p.proc.PID()
	busy, err := framework.MemoryOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The trimmer waits 10 s after the last operation or reconciliation
	// pass; a periodic pass (every minute) may come in between.
	const wantFile = 6 << 20
	start := time.Now()
	var idle framework.Memory
	framework.Eventually(t, 90*time.Second, "the provisioner's file pages given back once idle", func() (bool, error) {
		idle, err = framework.MemoryOf(pid)
		return err == nil && idle.File < wantFile, err
	})
	t.Logf("RSS after %d claims: %.1f MB (file %.1f MB); %v later, idle: %.1f MB (file %.1f MB)",
		n, float64(busy.RSS)/1e6, float64(busy.File)/1e6, time.Since(start).Round(time.Second), float64(idle.RSS)/1e6, float64(idle.File)/1e6)
}
