package fsimage

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var timeNow = time.Now

// TestKill9AtRandomPoints runs create, write, expand, clone, archive and
// remove in a child process, SIGKILLs it (with the tools it runs) at a
// random moment, and then checks from a fresh backend, as a restarted
// provisioner would: every volume opens, exactly once (one loop device
// per image, one mount per volume, none for temporary images), its data
// is whole, nothing is frozen, and closing everything leaves no mount and
// no loop device.
func TestKill9AtRandomPoints(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	store := filepath.Join(root, "store")
	t.Cleanup(func() { releaseAll(t, root) })
	rounds := 16
	ops := map[string]int{}
	for round := 0; round < rounds; round++ {
		delay := time.Duration(200+rand.IntN(2500)) * time.Millisecond
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childModeEnv+"=churn", childStoreEnv+"="+store, childStartEnv+"="+strconv.Itoa(rand.IntN(12)))
		// Its own process group: the kill takes mkfs, e2fsck and the other
		// tools it runs too, as a container's end would.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var stderr bytes.Buffer
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		ready := make(chan struct{})
		done := make(chan []string)
		go func() {
			var lines []string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines = append(lines, sc.Text())
				if sc.Text() == "READY" {
					close(ready)
				}
			}
			done <- lines
		}()
		select {
		case <-ready:
		case <-time.After(time.Minute):
		}
		time.Sleep(delay)
		syscall.Kill(-pid, syscall.SIGKILL)
		lines := <-done
		cmd.Wait()
		out := strings.Join(lines, "\n") + "\n" + stderr.String()
		if !slices.Contains(lines, "READY") {
			t.Fatalf("child never got ready:\n%s", out)
		}
		last := lines[len(lines)-1]
		ops[last]++
		t.Logf("round %d: killed after %s during %q", round, delay, last)
		if strings.Contains(out, "ERROR") {
			t.Fatalf("round %d: the child failed before it was killed:\n%s", round, out)
		}
		checkRestart(t, store, round)
	}
	t.Logf("killed during: %v", ops)
}

// checkRestart is what a restarted provisioner sees after a kill.
func checkRestart(t *testing.T, store string, round int) {
	t.Helper()
	ctx := testContext(t)
	b, err := New(ctx, storeOptions(store))
	if err != nil {
		t.Fatalf("round %d: New after kill: %v", round, err)
	}
	entries, _ := os.ReadDir(b.opts.ImageDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("round %d: temporary image %s survived New", round, e.Name())
		}
	}
	names, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		v, err := b.Open(ctx, n)
		if err != nil {
			t.Errorf("round %d: Open %s after kill: %v", round, n, err)
			continue
		}
		if data, err := os.ReadFile(filepath.Join(v.Path, "data")); err == nil && !bytes.Equal(data, payload) {
			t.Errorf("round %d: %s holds %d bytes of damaged data", round, n, len(data))
		}
		// Not frozen: a write goes through.
		done := make(chan error, 1)
		go func() { done <- os.WriteFile(filepath.Join(v.Path, "probe"), []byte("x"), 0o644) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("round %d: write to %s: %v", round, n, err)
			}
		case <-time.After(10 * time.Second):
			thaw(v.Path)
			t.Errorf("round %d: %s was left frozen", round, n)
		}
	}
	// Exactly once: one loop device per image, one mount per volume.
	mps, loops := leftovers(t, store)
	if len(loops) != len(names) || len(mps) != len(names) {
		t.Errorf("round %d: %d volumes, %d loop devices, %d mounts: %v", round, len(names), len(loops), len(mps), mps)
	}
	seen := map[string]bool{}
	for _, l := range loops {
		backing, _ := os.ReadFile(filepath.Join("/sys/block", strings.TrimPrefix(l.Path(), "/dev/"), "loop", "backing_file"))
		if seen[string(backing)] {
			t.Errorf("round %d: %s attached twice", round, backing)
		}
		seen[string(backing)] = true
	}
	t.Logf("round %d: %d volumes open after the kill: %v", round, len(names), names)
	// Every other round the next child starts with the volumes closed, the
	// others with them open (a restart that reuses mounts).
	if round%2 == 0 {
		for _, n := range names {
			if err := b.Close(ctx, n); err != nil {
				t.Errorf("round %d: Close %s: %v", round, n, err)
			}
		}
		if mps, loops := leftovers(t, store); len(mps)+len(loops) > 0 {
			t.Errorf("round %d: after closing everything: mounts %v, loop devices %v", round, mps, loops)
		}
	}
}
