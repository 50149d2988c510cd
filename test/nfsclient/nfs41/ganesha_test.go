package nfs41_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient/nfs41"
)

// startGanesha serves a fresh directory as /data over NFSv4 (the project's
// rendered config, VFS, grace seconds of grace after every start).
func startGanesha(t *testing.T, grace int) (s *ganesha.Server, addr, data string) {
	t.Helper()
	root := t.TempDir()
	data = filepath.Join(root, "data")
	if err := os.MkdirAll(data, 0o777); err != nil {
		t.Fatal(err)
	}
	ports, err := framework.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	s, err = ganesha.NewServer(ganesha.Config{StateDir: filepath.Join(root, "state"), BindAddress: "127.0.0.1",
		NFSPort: port, MountdPort: ports[1], GracePeriod: grace})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Stop(context.Background())
		cancel()
	})
	if err := s.Exports().Add(ctx, ganesha.Export{ID: 1, Path: data, Pseudo: "/data", Squash: ganesha.NoRootSquash}); err != nil {
		t.Fatal(err)
	}
	return s, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), data
}

// session dials addr as a new client with nothing to reclaim and looks up
// the export /data.
func session(ctx context.Context, t *testing.T, addr, owner string) (*nfs41.Client, nfs41.FH) {
	t.Helper()
	c, err := nfs41.Dial(ctx, addr, fmt.Sprintf("%s-%d", owner, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.ReclaimComplete(ctx); err != nil {
		t.Fatal(err)
	}
	dir, err := c.LookupPath(ctx, "/data")
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

// untilNoGrace retries f while the server answers NFS4ERR_GRACE (a new
// server's grace period), for up to timeout.
func untilNoGrace(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if !errors.Is(err, nfs41.ErrGrace) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestAgainstGanesha: open, write (FILE_SYNC), read, getattr and close
// over NFSv4.1 against the project's ganesha; and the statuses a test
// relies on (NO_GRACE for a reclaim outside grace, STALE or BADHANDLE
// for a forged handle).
func TestAgainstGanesha(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real ganesha.nfsd; skipped under -short")
	}
	_, addr, data := startGanesha(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, dir := session(ctx, t, addr, "nfs41-test")
	f, err := c.Open(ctx, dir, "f", true)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 300<<10) // several WRITEs and READs
	rand.Read(want)
	if err := c.Write(ctx, f, 0, want); err != nil {
		t.Fatal(err)
	}
	if size, err := c.GetAttrSize(ctx, f.FH); err != nil || size != uint64(len(want)) {
		t.Fatalf("GETATTR size %d %v, want %d", size, err, len(want))
	}
	got, err := c.Read(ctx, f, 0, len(want)+100)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("READ %d bytes %v, want %d", len(got), err, len(want))
	}
	if got, err := c.ReadFH(ctx, f.FH, 100, 10); err != nil || !bytes.Equal(got, want[100:110]) {
		t.Fatalf("READ with the anonymous stateid: %x %v", got, err)
	}
	if onDisk, err := os.ReadFile(filepath.Join(data, "f")); err != nil || !bytes.Equal(onDisk, want) {
		t.Fatalf("on disk: %d bytes %v", len(onDisk), err)
	}
	byPath, err := c.LookupPath(ctx, "/data/f")
	if err != nil || !bytes.Equal(byPath, f.FH) {
		t.Errorf("LOOKUP /data/f = %x %v, OPEN returned %x", byPath, err, f.FH)
	}
	if err := c.CloseFile(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(ctx, dir, "missing", false); !errors.Is(err, nfs41.ErrNoEnt) {
		t.Errorf("OPEN of a missing file without create: %v, want NFS4ERR_NOENT", err)
	}
	// A graceless server has no grace period to reclaim in.
	if _, err := c.ReclaimOpen(ctx, f.FH); !errors.Is(err, nfs41.ErrNoGrace) {
		t.Errorf("reclaim on a graceless server: %v, want NFS4ERR_NO_GRACE", err)
	}
	forged := append(nfs41.FH(nil), f.FH...)
	forged[len(forged)-1] ^= 0xff
	if _, err := c.GetAttrSize(ctx, forged); !errors.Is(err, nfs41.ErrStale) && !errors.Is(err, nfs41.ErrBadHandle) {
		t.Errorf("GETATTR of a forged handle: %v, want NFS4ERR_STALE or NFS4ERR_BADHANDLE", err)
	} else {
		t.Logf("GETATTR of a forged handle: %v", err)
	}
}

// TestReclaimAfterGaneshaCrash: the whole reclaim sequence against one
// ganesha that is killed (-9) and restarted by its supervisor with the
// same recovery directory: the old session is gone, the client sets up a
// new one with the same owner, reclaims its open with CLAIM_PREVIOUS during
// grace, sends RECLAIM_COMPLETE and goes on writing with the reclaimed
// stateid; nothing answers NFS4ERR_STALE.
func TestReclaimAfterGaneshaCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real ganesha.nfsd; skipped under -short")
	}
	const grace = 30
	s, addr, data := startGanesha(t, grace)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, dir := session(ctx, t, addr, "nfs41-reclaim")
	var f *nfs41.File
	untilNoGrace(t, 2*grace*time.Second, func() (err error) {
		f, err = c.Open(ctx, dir, "f", true)
		return err
	})
	before := []byte("acknowledged before the crash\n")
	if err := c.Write(ctx, f, 0, before); err != nil {
		t.Fatal(err)
	}
	oldClientID := c.ClientID()

	pid := s.GaneshaPID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for s.Restarts() == 0 || s.GaneshaPID() == 0 {
		if time.Since(t0) > time.Minute {
			t.Fatal("ganesha not restarted within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The connection died with the server; on a new one, the old session
	// is unknown.
	if _, err := c.GetAttrSize(ctx, f.FH); err == nil {
		t.Fatal("the old connection still works after the server restarted")
	}
	if err := c.Reconnect(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := c.GetAttrSize(ctx, f.FH)
	t.Logf("the old session on a new connection: %v", err)
	if !errors.Is(err, nfs41.ErrBadSession) {
		t.Fatalf("the old session after the restart: %v, want NFS4ERR_BADSESSION", err)
	}
	if err := c.Redial(ctx); err != nil {
		t.Fatal(err)
	}
	// ganesha's client IDs start with its start time in seconds: a restart
	// within the same second may hand out the same one again.
	t.Logf("client ID %x before the crash, %x after", oldClientID, c.ClientID())
	f2, err := c.ReclaimOpen(ctx, f.FH)
	if err != nil {
		t.Fatalf("reclaim during grace: %v", err)
	}
	if err := c.ReclaimComplete(ctx); err != nil {
		t.Fatal(err)
	}
	after := []byte("written with the reclaimed stateid\n")
	if err := c.Write(ctx, f2, uint64(len(before)), after); err != nil {
		t.Fatal(err)
	}
	got, err := c.Read(ctx, f2, 0, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reclaimed and read back %s after the kill", time.Since(t0).Round(time.Millisecond))
	if want := append(append([]byte(nil), before...), after...); !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	if err := c.CloseFile(ctx, f2); err != nil {
		t.Fatal(err)
	}
	if onDisk, _ := os.ReadFile(filepath.Join(data, "f")); !bytes.Equal(onDisk, got) {
		t.Errorf("on disk %q", onDisk)
	}
}
